//! `ds_remove_clients`: remove other clients of the committer's own user.

use mimid_wire::MLSGroupUpdate;

use super::removals;
use crate::commit;
use crate::error::HubError;
use crate::state::HubGroup;
use crate::step::{Outcome, Req};

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
) -> Result<Outcome, HubError> {
    commit::run(req, group, update, &[], false, &|group, staged| {
        let removed = removals(group, staged, "remove_clients")?;
        let committer = group
            .member(staged.committer)
            .ok_or_else(|| HubError::NotAMember("committer is not a member".into()))?
            .client
            .user();
        match removed
            .iter()
            .find(|(_, client)| client.user() != committer)
        {
            Some((_, client)) => Err(HubError::NotAllowed(format!(
                "{client} is not a client of {committer}"
            ))),
            None => Ok(()),
        }
    })
}
