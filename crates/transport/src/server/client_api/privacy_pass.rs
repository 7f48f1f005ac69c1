//! Privacy Pass issuance for this provider's clients (`docs/client-api.md`,
//! `docs/protocol.md` 3.6): this provider's issuer signs the RFC 9578
//! `TokenRequest` (type 2) of an authenticated client, within the
//! client's issuance limit; the client finalizes the token and presents it
//! to any origin that accepts this issuer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use mimid_store::Store;
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::auth::ClientSigned;
use super::{ApiFailure, base64, json, parse, unbase64};
use crate::error::TransportError;

#[derive(Deserialize)]
struct Issue {
    /// An RFC 9578 `TokenRequest`, base64url.
    token_request: String,
}

#[derive(Serialize)]
struct Issued {
    /// The RFC 9578 `TokenResponse`, base64url.
    token_response: String,
}

#[derive(Serialize)]
struct IssuerInfo {
    /// The issuer name challenges for this issuer carry.
    issuer_name: String,
    /// The issuer's public key (DER SubjectPublicKeyInfo), base64url.
    token_key: String,
    /// The token type (2, publicly verifiable, blind RSA).
    token_type: u16,
}

/// `POST /client/v1/privacy_pass/token-request`.
pub(super) async fn issue<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let pp = state
        .config
        .privacy_pass
        .as_ref()
        .ok_or(TransportError::NotFound)?;
    let asked: Issue = parse(&request.body)?;
    let token_request = unbase64("token_request", &asked.token_request)?;
    let response = pp.issue(request.client.as_str(), &token_request).await?;
    Ok(json(
        StatusCode::OK,
        &Issued {
            token_response: base64(&response),
        },
    ))
}

/// `GET /client/v1/privacy_pass/issuer`: this provider's issuer.
pub(super) async fn issuer<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    _request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let (issuer_name, token_key) = state
        .config
        .privacy_pass
        .as_ref()
        .and_then(|pp| pp.issuer())
        .ok_or(TransportError::NotFound)?;
    Ok(json(
        StatusCode::OK,
        &IssuerInfo {
            issuer_name: issuer_name.to_owned(),
            token_key: base64(token_key),
            token_type: crate::privacy_pass::TOKEN_TYPE,
        },
    ))
}
