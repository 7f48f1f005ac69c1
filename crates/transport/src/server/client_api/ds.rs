//! `POST /client/v1/ds/{endpoint}`: a client's DS request (`group_operation`,
//! `welcome_information`, `external_commit_information`), submitted to this
//! provider's hub or relayed to the group's ([`crate::relay`]). The
//! provider first holds the client to itself: a request that introduces a
//! client (a creator, an external joiner, a requester) must introduce the
//! signing one ([`mimid_core::binding`]); the hub checks the rest.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mimid_core::DsEndpoint;
use mimid_core::binding::acting_client;
use mimid_store::Store;
use mimid_wire::{DSError, DSRequest, DSResponse, ErrorCode, PROTOCOL_VERSION, Wire};
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::auth::ClientSigned;
use super::{ApiFailure, base64, json, parse, unbase64};
use crate::error::TransportError;

#[derive(Deserialize)]
struct Submit {
    /// A TLS-encoded `DSRequest`.
    request: String,
}

#[derive(Serialize)]
struct Answer {
    /// The hub's TLS-encoded `DSResponse`.
    response: String,
}

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    Path(endpoint): Path<String>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let endpoint = match endpoint.as_str() {
        "group_operation" => DsEndpoint::GroupOperation,
        "welcome_information" => DsEndpoint::WelcomeInformation,
        "external_commit_information" => DsEndpoint::ExternalCommitInformation,
        _ => return Err(TransportError::NotFound.into()),
    };
    let asked: Submit = parse(&request.body)?;
    let bytes = unbase64("request", &asked.request)?;
    let ds_request = DSRequest::decode_exact(&bytes, &state.config.limits)?;
    let refused = |error: DSError| TransportError::Peer {
        provider: state.config.domain.to_string(),
        error,
    };
    match acting_client(&ds_request) {
        Ok(Some(actor)) if actor != request.client => {
            return Err(refused(DSError::text(
                ErrorCode::OperationNotAllowed,
                format!("{} may not act as {actor}", request.client),
            ))
            .into());
        }
        Ok(_) => {}
        Err(e) => return Err(refused(e.to_ds_error()).into()),
    }
    let domain = &state.config.domain;
    let body = crate::relay::submit(&state.service, &state.client, domain, endpoint, &ds_request)
        .await
        .map_err(|error| {
            let hub = match mimid_core::named_group(&ds_request.request_body) {
                Ok(Some(group)) => group.hub_domain.to_string(),
                _ => domain.to_string(),
            };
            TransportError::Peer {
                provider: hub,
                error,
            }
        })?;
    let response = DSResponse {
        protocol_version: PROTOCOL_VERSION,
        response_body: body,
    }
    .to_bytes()
    .map_err(|e| TransportError::Internal(e.to_string()))?;
    Ok(json(
        StatusCode::OK,
        &Answer {
            response: base64(&response),
        },
    ))
}
