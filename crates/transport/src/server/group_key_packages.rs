//! `/group_key_packages` (`docs/protocol.md` 9): signed; one regular
//! KeyPackage for each (named) client of one of this provider's users, only
//! for a requester the user has a connection with.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use mimid_store::{KeyPackageKind, Store};
use mimid_wire::{GroupKeyPackageRequest, GroupKeyPackageResponse, KeyPackagesResult, Wire};

use super::{AppState, Endpoint, Failure, Signed, ok_body};
use crate::error::TransportError;

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: Signed,
) -> Result<Response, Failure> {
    let fail = |e: TransportError| Failure::new(Some(Endpoint::GroupKeyPackages), e);
    let asked = GroupKeyPackageRequest::decode_exact(&request.body, &state.config.limits)
        .map_err(|e| fail(e.into()))?;
    let ok = state
        .people
        .key_packages(
            state.service.store(),
            request.peer.domain(),
            KeyPackageKind::Regular,
            &asked.requester,
            &asked.target,
            &asked.clients,
            state.clock.now(),
        )
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(ok_body(
        Endpoint::GroupKeyPackages,
        GroupKeyPackageResponse {
            version: mimid_wire::PROTOCOL_VERSION,
            result: KeyPackagesResult::Ok(ok),
        }
        .to_bytes(),
    ))
}
