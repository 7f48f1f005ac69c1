//! `ds_request_group_id`: issue a fresh group id and reserve it.

use mimid_wire::{DSResponseBody, GroupIdField};

use crate::error::HubError;
use crate::hub::{Context, Hub, Origin, Outcome, Slot, Target, Write};

pub(crate) fn handle(
    hub: &Hub,
    target: &Target,
    slot: &mut Slot,
    ctx: &Context,
) -> Result<Outcome, HubError> {
    if matches!(ctx.origin, Origin::Provider(_)) && !hub.config.allow_foreign_groups {
        return Err(HubError::NotAllowed(
            "this hub issues group ids only to its own clients".into(),
        ));
    }
    if !matches!(slot, Slot::Empty) {
        // 16 random bytes collided: the caller retries with new randomness.
        return Err(HubError::GroupExists);
    }
    let until = ctx.now.saturating_add(hub.config.reservation_lifetime);
    *slot = Slot::Reserved { until };
    let mut outcome = Outcome::reply(DSResponseBody::GroupId(GroupIdField(
        target.group_id.clone(),
    )));
    outcome.write = Write::Reserve { until };
    Ok(outcome)
}
