//! What the three DS endpoints share: decode, the per-member and per-group
//! rate limits, run the hub for the authenticated provider, encode.

use axum::response::Response;
use mimid_core::{DsEndpoint, Origin};
use mimid_store::Store;
use mimid_wire::{DSAuthData, DSRequest, DSResponse, Wire};

use super::{AppState, Failure, Signed, ok_body};
use crate::error::TransportError;
use crate::ratelimit::take;

pub(super) async fn handle<S: Store>(
    state: &AppState<S>,
    endpoint: DsEndpoint,
    request: Signed,
) -> Result<Response, Failure> {
    let fail = |e: TransportError| Failure::new(Some(endpoint.into()), e);
    let decoded =
        DSRequest::decode_exact(&request.body, &state.config.limits).map_err(|e| fail(e.into()))?;
    // Keyed under the sending provider too: a provider spends only its own
    // allowance, whatever group or leaf it names.
    if let Ok(Some(group)) = mimid_core::named_group(&decoded.request_body) {
        let sender = request.peer.domain().clone();
        let limiters = &state.limiters;
        match (endpoint, &decoded.authentication_data) {
            (DsEndpoint::GroupOperation, DSAuthData::ClientSignature(sig)) => {
                let key = (sender, group.to_mls_bytes(), sig.sender_index);
                take(&limiters.per_member, &key, "per member").map_err(fail)?;
            }
            (DsEndpoint::GroupOperation, _) => {}
            (DsEndpoint::WelcomeInformation | DsEndpoint::ExternalCommitInformation, _) => {
                let key = (sender, group.to_mls_bytes());
                take(&limiters.per_group, &key, "per group").map_err(fail)?;
            }
        }
    }
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
