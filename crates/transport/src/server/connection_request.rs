//! `/connection_request` (`docs/protocol.md` 7): signed; another provider
//! asks, for one of its users, to connect with one of this provider's, with
//! the Welcome into their connection group. Every client of the user sees
//! it until the user accepts, declines or blocks (client API).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use mimid_store::Store;
use mimid_wire::{QueueingServiceRequest, Wire};

use super::{AppState, Endpoint, Failure, Signed, ok_body};
use crate::error::TransportError;

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: Signed,
) -> Result<Response, Failure> {
    let fail = |e: TransportError| Failure::new(Some(Endpoint::ConnectionRequest), e);
    let decoded = QueueingServiceRequest::decode_exact(&request.body, &state.config.limits)
        .map_err(|e| {
            let failure = fail(e.into());
            match super::deliver_message::message_id_of(&request.body, &state.config.limits) {
                Some(id) => failure.echoing(id),
                None => failure,
            }
        })?;
    let message_id = decoded.message_id;
    if let mimid_wire::QueueingServicePayload::ConnectionRequest(c) = &decoded.payload {
        crate::ratelimit::take(
            &state.limiters.per_target_user,
            &c.recipient_user,
            "per target user",
        )
        .map_err(|e| fail(e).echoing(message_id))?;
    }
    let ok = state
        .guest
        .connection_request(
            state.service.store(),
            request.peer.domain(),
            &decoded,
            state.clock.now(),
        )
        .await
        .map_err(|e| fail(e.into()).echoing(message_id))?;
    Ok(ok_body(
        Endpoint::ConnectionRequest,
        mimid_service::guest::qs_response(message_id, Ok(ok)).to_bytes(),
    ))
}
