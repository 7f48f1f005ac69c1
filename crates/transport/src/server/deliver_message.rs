//! `/deliver_message` (`docs/protocol.md` 7): signed; a hub delivers a
//! message, or several in order, for this provider's clients, who find
//! them in their queues.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use mimid_core::guest::QsEndpoint;
use mimid_store::Store;
use mimid_wire::{Limits, MessageId, ProviderDomain, QueueingServiceRequest, Reader, Wire};

use super::{AppState, Endpoint, Failure, Signed, ok_body};
use crate::error::TransportError;

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: Signed,
) -> Result<Response, Failure> {
    let fail = |e: TransportError| Failure::new(Some(Endpoint::DeliverMessage), e);
    let decoded = QueueingServiceRequest::decode_exact(&request.body, &state.config.limits)
        .map_err(|e| {
            let failure = fail(e.into());
            match message_id_of(&request.body, &state.config.limits) {
                Some(id) => failure.echoing(id),
                None => failure,
            }
        })?;
    let message_id = decoded.message_id;
    let ok = state
        .guest
        .deliver(
            state.service.store(),
            request.peer.domain(),
            QsEndpoint::DeliverMessage,
            &decoded,
            state.clock.now(),
        )
        .await
        .map_err(|e| fail(e.into()).echoing(message_id))?;
    Ok(ok_body(
        Endpoint::DeliverMessage,
        mimid_service::guest::qs_response(message_id, Ok(ok)).to_bytes(),
    ))
}

/// The `message_id` of a body that does not decode as a whole, if it is
/// long enough to hold one at its place (after `version`, `sender` and
/// `recipient`; `docs/protocol.md` 3.1).
pub(super) fn message_id_of(body: &[u8], limits: &Limits) -> Option<MessageId> {
    let mut reader = Reader::new(body, limits);
    u16::decode(&mut reader).ok()?;
    ProviderDomain::decode(&mut reader).ok()?;
    ProviderDomain::decode(&mut reader).ok()?;
    MessageId::decode(&mut reader).ok()
}
