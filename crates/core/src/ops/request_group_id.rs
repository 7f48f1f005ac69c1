//! `ds_request_group_id`: issue a fresh group id and reserve it.

use mimid_wire::{DSResponseBody, GroupIdField};

use crate::error::HubError;
use crate::step::{Origin, Outcome, Req, Slot, Write};

pub(crate) fn handle(req: &Req, slot: &mut Slot) -> Result<Outcome, HubError> {
    let ctx = req.ctx;
    if matches!(ctx.origin, Origin::Provider(_)) && !req.config.allow_foreign_groups {
        return Err(HubError::NotAllowed(
            "this hub issues group ids only to its own clients".into(),
        ));
    }
    if !matches!(slot, Slot::Empty) {
        // 16 random bytes collided: the caller retries with new randomness.
        return Err(HubError::GroupExists);
    }
    let until = ctx.now.saturating_add(req.config.reservation_lifetime);
    let by = ctx.origin.acts_for(req.config).clone();
    *slot = Slot::Reserved {
        until,
        by: by.clone(),
    };
    let mut outcome = Outcome::reply(DSResponseBody::GroupId(GroupIdField(req.group_id.clone())));
    outcome.write = Write::Reserve { until, by };
    Ok(outcome)
}
