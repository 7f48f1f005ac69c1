//! `ds_add_clients`: add new clients of users already in the group.

use mimid_wire::{MLSGroupUpdate, WelcomeMessage};
use openmls::prelude::Proposal;

use super::{Req, added_clients, committer_unchanged, no_duplicate_clients, only_by_value};
use crate::commit;
use crate::error::HubError;
use crate::hub::Outcome;
use crate::state::HubGroup;

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
    welcomes: &[WelcomeMessage],
) -> Result<Outcome, HubError> {
    commit::run(req, group, update, welcomes, false, &|group, staged| {
        only_by_value(staged, "Add proposals", |p| matches!(p, Proposal::Add(_)))?;
        committer_unchanged(group, staged)?;
        let added = added_clients(staged)?;
        if added.is_empty() {
            return Err(HubError::NotAllowed(
                "add_clients must add at least one client".into(),
            ));
        }
        no_duplicate_clients(group, &added)?;
        if let Some(c) = added.iter().find(|c| !group.has_user(&c.user())) {
            return Err(HubError::NotAllowed(format!(
                "{} has no client in the group: use add_users",
                c.user()
            )));
        }
        Ok(())
    })
}
