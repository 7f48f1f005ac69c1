//! `ds_remove_users`: remove whole users (every client of each).

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
        let removed = removed_clients(group, staged)?;
        if removed.is_empty() {
            return Err(HubError::NotAllowed(
                "remove_users must remove at least one client".into(),
            ));
        }
        if removed.iter().any(|(i, _)| *i == staged.committer) {
            return Err(HubError::NotAllowed(
                "use self_remove_client to leave".into(),
            ));
        }
        for (_, client) in &removed {
            let user = client.user();
            let left = group
                .members()
                .iter()
                .filter(|m| {
                    m.client.user() == user && !removed.iter().any(|(i, _)| *i == m.leaf_index)
                })
                .count();
            if left > 0 {
                return Err(HubError::NotAllowed(format!(
                    "{user} would keep {left} client(s): remove every client"
                )));
            }
        }
        Ok(())
    })
}
