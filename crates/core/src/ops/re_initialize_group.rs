//! `ds_re_initialize_group`: decoded, but not offered by profile 1 (the
//! drafts do not say how the successor group comes to exist).

use crate::error::HubError;
use crate::step::Outcome;

pub(crate) fn handle() -> Result<Outcome, HubError> {
    Err(HubError::UnsupportedOperation(
        "re_initialize_group is not supported in profile 1: create a new group instead".into(),
    ))
}
