//! `ds_update_client`: a commit with a fresh path and no by-value proposals.

use mimid_wire::MLSGroupUpdate;

use super::only_by_value;
use crate::commit;
use crate::error::HubError;
use crate::state::HubGroup;
use crate::step::{Outcome, Req};

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
) -> Result<Outcome, HubError> {
    commit::run(req, group, update, &[], false, &|_, staged| {
        only_by_value(staged, "no proposals", |_| false)?;
        if staged.staged.update_path_leaf_node().is_none() {
            return Err(HubError::NotAllowed(
                "update_client needs an update path".into(),
            ));
        }
        Ok(())
    })
}
