//! `ds_delete_group`: a commit removing everyone but the committer; the
//! hub drops the group once the commit is stored for delivery.

use mimid_wire::MLSGroupUpdate;
use openmls::prelude::Proposal;

use super::{all_removed_leaves, only_by_value};
use crate::commit;
use crate::error::HubError;
use crate::state::HubGroup;
use crate::step::{Outcome, Req, Write};

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
) -> Result<Outcome, HubError> {
    let mut outcome = commit::run(req, group, update, &[], false, &|group, staged| {
        only_by_value(staged, "Remove proposals", |p| {
            matches!(p, Proposal::Remove(_))
        })?;
        // Pending self-removes, taken by reference, count too.
        let removed = all_removed_leaves(staged);
        if removed.len() + 1 != group.members().len() || removed.contains(&staged.committer) {
            return Err(HubError::NotAllowed(
                "delete_group must remove every member but the committer".into(),
            ));
        }
        Ok(())
    })?;
    outcome.write = Write::Delete;
    outcome.snapshot = None;
    Ok(outcome)
}
