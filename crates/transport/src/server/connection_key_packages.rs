//! `/connection_key_packages` (`docs/protocol.md` 9): signed; one connection
//! KeyPackage for each client of one of this provider's users, to anyone
//! who may ask to connect.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use mimid_store::{KeyPackageKind, Store};
use mimid_wire::{
    ConnectionKeyPackageRequest, ConnectionKeyPackageResponse, KeyPackagesResult, Wire,
};

use super::{AppState, Endpoint, Failure, Signed, ok_body};
use crate::error::TransportError;

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: Signed,
) -> Result<Response, Failure> {
    let fail = |e: TransportError| Failure::new(Some(Endpoint::ConnectionKeyPackages), e);
    let asked = ConnectionKeyPackageRequest::decode_exact(&request.body, &state.config.limits)
        .map_err(|e| fail(e.into()))?;
    crate::ratelimit::take(
        &state.limiters.per_target_user,
        &asked.target,
        "per target user",
    )
    .map_err(fail)?;
    let ok = state
        .people
        .key_packages(
            state.service.store(),
            request.peer.domain(),
            KeyPackageKind::Connection,
            &asked.requester,
            &asked.target,
            &[],
            state.clock.now(),
        )
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(ok_body(
        Endpoint::ConnectionKeyPackages,
        ConnectionKeyPackageResponse {
            version: mimid_wire::PROTOCOL_VERSION,
            result: KeyPackagesResult::Ok(ok),
        }
        .to_bytes(),
    ))
}
