//! What the three DS endpoints share: decode, run the hub for the
//! authenticated provider, encode.

use axum::response::Response;
use mimid_core::{DsEndpoint, Origin};
use mimid_store::Store;
use mimid_wire::{DSRequest, DSResponse, Wire};

use super::{AppState, Failure, Signed, ok_body};
use crate::error::TransportError;

pub(super) async fn handle<S: Store>(
    state: &AppState<S>,
    endpoint: DsEndpoint,
    request: Signed,
) -> Result<Response, Failure> {
    let fail = |e: TransportError| Failure::new(Some(endpoint.into()), e);
    let decoded =
        DSRequest::decode_exact(&request.body, &state.config.limits).map_err(|e| fail(e.into()))?;
    // The hub refuses a group of another hub (421 `wrong_recipient`) and
    // a request type that does not belong to the path (400).
    let body = state
        .service
        .handle(
            endpoint,
            &decoded,
            Origin::Provider(request.peer.domain().clone()),
        )
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(ok_body(
        endpoint.into(),
        DSResponse {
            protocol_version: 1,
            response_body: body,
        }
        .to_bytes(),
    ))
}
