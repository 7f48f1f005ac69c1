//! `ds_remove_users`: remove whole users (every client of each).

use mimid_wire::MLSGroupUpdate;

use super::removals;
use crate::commit;
use crate::error::HubError;
use crate::state::HubGroup;
use crate::step::Outcome;
use crate::step::Req;

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
) -> Result<Outcome, HubError> {
    commit::run(req, group, update, &[], false, &|group, staged| {
        let removed = removals(group, staged, "remove_users")?;
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
