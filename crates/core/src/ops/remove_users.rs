//! `ds_remove_users`: remove whole users (every client of each).

use std::collections::HashSet;

use mimid_wire::{MLSGroupUpdate, UserId};

use super::{all_removed_leaves, removals};
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
        // The users removed by value lose every client: the others go by
        // value too, or by reference (their pending self-removes).
        let users: HashSet<UserId> = removals(group, staged, "remove_users")?
            .iter()
            .filter_map(|(i, _)| group.member(*i).map(|m| m.client.user()))
            .collect();
        let gone = all_removed_leaves(staged);
        match group
            .members()
            .iter()
            .filter(|m| !gone.contains(&m.leaf_index))
            .map(|m| (m.client.user(), m))
            .find(|(user, _)| users.contains(user))
        {
            Some((user, m)) => Err(HubError::NotAllowed(format!(
                "{user} would keep {}: remove every client",
                m.client
            ))),
            None => Ok(()),
        }
    })
}
