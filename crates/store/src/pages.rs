//! State pages: a group's state is stored as pages of [`STATE_PAGE`] bytes
//! (`state_pages`), so that a commit rewrites the few pages it changed
//! instead of the whole state. This is what a step's write does to them,
//! checked before anything changes.

use std::collections::BTreeMap;

use crate::{STATE_PAGE, StoreError};

/// The effect of the accepted steps on one group's state pages.
#[derive(Default)]
pub(crate) struct PagePlan<'a> {
    /// Every stored page goes first (the state was replaced whole, or the
    /// group deleted).
    pub(crate) clear: bool,
    /// Length of the state as the steps leave it (`None`: not written).
    pub(crate) len: Option<u64>,
    /// Pages written by the steps, by number; the last write of each wins.
    pub(crate) written: BTreeMap<u32, &'a [u8]>,
}

/// The number of pages of a state of `len` bytes.
pub(crate) fn page_count(len: u64) -> u64 {
    len.div_ceil(STATE_PAGE as u64)
}

/// What one step does to the state pages (checked before anything changes).
pub(crate) enum PageChange<'a> {
    Replace(&'a [u8]),
    Patch(u64, &'a [(u32, Vec<u8>)]),
    Clear,
}

impl<'a> PageChange<'a> {
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let bad = |what: String| Err(StoreError::Database(format!("state patch: {what}")));
        match *self {
            PageChange::Replace(state) if page_count(state.len() as u64) > u64::from(u32::MAX) => {
                bad(format!("a state of {} bytes", state.len()))
            }
            PageChange::Patch(len, pages) => {
                for (page, data) in pages {
                    let start = u64::from(*page) * STATE_PAGE as u64;
                    let expected = len.saturating_sub(start).min(STATE_PAGE as u64);
                    if start >= len || data.len() as u64 != expected {
                        return bad(format!(
                            "page {page} has {} bytes; a state of {len} bytes needs {expected}",
                            data.len()
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn apply(self, plan: &mut PagePlan<'a>) {
        match self {
            PageChange::Replace(state) => {
                plan.clear = true;
                plan.written.clear();
                plan.len = Some(state.len() as u64);
                for (page, data) in (0u32..).zip(state.chunks(STATE_PAGE)) {
                    plan.written.insert(page, data);
                }
            }
            PageChange::Patch(len, pages) => {
                plan.len = Some(len);
                for (page, data) in pages {
                    plan.written.insert(*page, data);
                }
            }
            PageChange::Clear => {
                plan.clear = true;
                plan.written.clear();
                plan.len = Some(0);
            }
        }
    }
}
