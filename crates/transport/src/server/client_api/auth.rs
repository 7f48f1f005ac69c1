//! Client authentication: a request carries its client's ClientID, a
//! timestamp, a nonce and an Ed25519 signature over them, the provider,
//! the method, the path and the body's hash
//! (`mimid_wire::client_api::client_request_content`), by the key the
//! client enrolled with. A signature by another client's key, an old or
//! future timestamp, or a nonce seen before is refused (401) before any
//! handler runs, so a client can act only as itself.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use bytes::Bytes;
use ed25519_dalek::{Signature, VerifyingKey};
use http_body_util::BodyExt as _;
use mimid_store::Store;
use mimid_wire::ClientId;
use mimid_wire::client_api::{
    CLIENT_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, client_request_content,
};
use sha2::{Digest, Sha256};

use super::super::AppState;
use super::{ApiFailure, unbase64};
use crate::auth::ReplayCache;
use crate::error::TransportError;

/// How far a request's timestamp may be from the server's clock (seconds).
const WINDOW: u64 = 300;

/// Client nonces remembered at most (then 503 until some expire).
const CAPACITY: usize = 1_000_000;

/// The nonces of client requests seen in the window.
#[derive(Default)]
pub(crate) struct ClientReplay(Mutex<ReplayCache<String>>);

/// A request of an authenticated client, and its body.
pub(crate) struct ClientSigned {
    pub client: ClientId,
    pub body: Bytes,
}

fn fail(reason: impl Into<String>) -> ApiFailure {
    ApiFailure(TransportError::Authentication(reason.into()))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, ApiFailure> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| fail(format!("no {name} header")))
}

impl<S: Store> FromRequest<Arc<AppState<S>>> for ClientSigned {
    type Rejection = ApiFailure;

    async fn from_request(request: Request, state: &Arc<AppState<S>>) -> Result<Self, ApiFailure> {
        let (parts, body) = request.into_parts();
        let limit = state.config.body_limit;
        let body = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|_| ApiFailure(TransportError::PayloadTooLarge { limit }))?
            .to_bytes();
        let headers = &parts.headers;
        let client: ClientId = header(headers, CLIENT_HEADER)?
            .parse()
            .map_err(|e| fail(format!("{CLIENT_HEADER}: {e}")))?;
        let timestamp: u64 = header(headers, TIMESTAMP_HEADER)?
            .parse()
            .map_err(|_| fail(format!("{TIMESTAMP_HEADER}: not a number")))?;
        let nonce: [u8; 16] = hex::decode(header(headers, NONCE_HEADER)?)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| fail(format!("{NONCE_HEADER}: not 16 bytes of hex")))?;
        let signature =
            unbase64(SIGNATURE_HEADER, header(headers, SIGNATURE_HEADER)?).map_err(ApiFailure)?;
        let signature = Signature::from_slice(&signature)
            .map_err(|_| fail(format!("{SIGNATURE_HEADER}: not an Ed25519 signature")))?;
        let now = state.clock.now();
        if timestamp.abs_diff(now) > WINDOW {
            return Err(fail(format!(
                "timestamp {timestamp} is more than {WINDOW} s from {now}"
            )));
        }
        let key = state
            .service
            .store()
            .client_key(client.as_str())
            .await?
            .ok_or_else(|| fail(format!("{client} has not enrolled")))?;
        let key = <[u8; 32]>::try_from(key.as_slice())
            .ok()
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(|| fail(format!("{client} has no usable key")))?;
        let path = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |p| p.as_str());
        let body_sha256: [u8; 32] = Sha256::digest(&body).into();
        let content = client_request_content(
            state.config.domain.as_str(),
            client.as_str(),
            parts.method.as_str(),
            path,
            timestamp,
            &nonce,
            &body_sha256,
        );
        key.verify_strict(&content, &signature)
            .map_err(|_| fail("bad client signature"))?;
        state
            .client_replay
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remember(
                &client.as_str().to_owned(),
                nonce,
                now,
                2 * WINDOW,
                CAPACITY,
            )
            .map_err(ApiFailure)?;
        Ok(ClientSigned { client, body })
    }
}
