//! `ds_remove_clients`: remove other clients of the committer's own user.

use mimid_wire::MLSGroupUpdate;
use openmls::prelude::Proposal;

use super::{Req, committer_unchanged, only_by_value, removed_clients};
use crate::commit;
use crate::error::HubError;
use crate::hub::Outcome;
use crate::state::HubGroup;

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
) -> Result<Outcome, HubError> {
    commit::run(req, group, update, &[], false, &|group, staged| {
        only_by_value(staged, "Remove proposals", |p| {
            matches!(p, Proposal::Remove(_))
        })?;
        committer_unchanged(group, staged)?;
        let committer = group
            .member(staged.committer)
            .ok_or_else(|| HubError::NotAMember("committer is not a member".into()))?
            .client
            .user();
        let removed = removed_clients(group, staged)?;
        if removed.is_empty() {
            return Err(HubError::NotAllowed(
                "remove_clients must remove at least one client".into(),
            ));
        }
        for (index, client) in &removed {
            if *index == staged.committer {
                return Err(HubError::NotAllowed(
                    "use self_remove_client to leave".into(),
                ));
            }
            if client.user() != committer {
                return Err(HubError::NotAllowed(format!(
                    "{client} is not a client of {committer}"
                )));
            }
        }
        Ok(())
    })
}
