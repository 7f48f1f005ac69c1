//! `ds_add_clients`: add new clients of users already in the group.

use mimid_wire::{MLSGroupUpdate, WelcomeMessage};

use super::additions;
use crate::commit;
use crate::error::HubError;
use crate::state::HubGroup;
use crate::step::Outcome;
use crate::step::Req;

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
    welcomes: &[WelcomeMessage],
) -> Result<Outcome, HubError> {
    commit::run(req, group, update, welcomes, false, &|group, staged| {
        let added = additions(group, staged, "add_clients")?;
        if let Some(c) = added.iter().find(|c| !group.has_user(&c.user())) {
            return Err(HubError::NotAllowed(format!(
                "{} has no client in the group: use add_users",
                c.user()
            )));
        }
        Ok(())
    })
}
