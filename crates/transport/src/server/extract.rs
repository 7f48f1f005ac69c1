//! Extractors: the body (content type 415, size 413), the Privacy Pass
//! token of a guarded endpoint (401 `privacy_pass_required`) and provider
//! authentication (401) come before any handler code runs.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use mimid_store::Store;

use super::{AppState, Endpoint, Failure};
use crate::auth::{Authenticated, PeerCertificates};
use crate::connections::RequestSlot;
use crate::error::TransportError;
use crate::privacy_pass::Redeemed;

/// A request body that passed the content-type and size checks.
pub struct Unsigned {
    pub method: Method,
    pub body: Bytes,
}

/// A request body and the provider that authenticated it.
pub struct Signed {
    pub peer: Authenticated,
    pub body: Bytes,
}

fn is_octet_stream(value: &[u8]) -> bool {
    let value = value.split(|&b| b == b';').next().unwrap_or_default();
    value
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/octet-stream")
}

/// Reads the body: its media type must be `application/octet-stream`
/// (compared case-insensitively, parameters ignored), except that a GET
/// without a body needs none; a declared or streamed length over `limit`
/// is refused without reading further.
async fn read_body(parts: &Parts, body: Body, limit: usize) -> Result<Bytes, TransportError> {
    let mut types = parts.headers.get_all(header::CONTENT_TYPE).iter();
    let limit = match (types.next(), types.next()) {
        (Some(t), None) if is_octet_stream(t.as_bytes()) => limit,
        // Without a content type, only an empty GET body is acceptable.
        (None, _) if parts.method == Method::GET => 0,
        _ => return Err(TransportError::UnsupportedMediaType),
    };
    let too_large = || {
        if limit == 0 {
            TransportError::UnsupportedMediaType
        } else {
            TransportError::PayloadTooLarge { limit }
        }
    };
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
        let length: u64 = length
            .to_str()
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| TransportError::Malformed("bad Content-Length".into()))?;
        if length > limit as u64 {
            return Err(too_large());
        }
    }
    let mut body = body;
    let mut bytes = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len().saturating_add(data.len()) > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.freeze())
}

/// A body that could not be read: too slow (the body timeout, 503 so that
/// a sender retries), or broken off (400).
fn body_error(e: axum::Error) -> TransportError {
    let e = e.into_inner();
    if e.is::<super::BodyTimedOut>() {
        TransportError::Timeout
    } else {
        TransportError::Malformed(format!("body: {e}"))
    }
}

/// The Privacy Pass token of a request to a guarded endpoint, verified
/// but not spent (`docs/protocol.md` 3.1: after the size, before provider
/// authentication); `None` when the endpoint needs none.
async fn verify_token<S: Store>(
    state: &AppState<S>,
    parts: &Parts,
) -> Result<Option<Redeemed>, TransportError> {
    match &state.config.privacy_pass {
        Some(pp) if pp.guards(Endpoint::from_path(parts.uri.path())) => {
            pp.verify(&parts.headers).await.map(Some)
        }
        _ => Ok(None),
    }
}

/// Spends a verified token in the store (refused if it was spent before,
/// by this process or another sharing the store).
async fn spend_token<S: Store>(
    state: &AppState<S>,
    redeemed: Option<Redeemed>,
) -> Result<(), TransportError> {
    match (&state.config.privacy_pass, redeemed) {
        (Some(pp), Some(redeemed)) => {
            pp.spend(state.service.store(), redeemed, state.clock.now())
                .await
        }
        _ => Ok(()),
    }
}

impl<S: Store> FromRequest<Arc<AppState<S>>> for Unsigned {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &Arc<AppState<S>>) -> Result<Self, Failure> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let body = read_body(&parts, body, state.config.body_limit)
            .await
            .map_err(|e| Failure::at(path, e))?;
        let token = verify_token(state, &parts)
            .await
            .map_err(|e| Failure::at(path, e))?;
        spend_token(state, token)
            .await
            .map_err(|e| Failure::at(path, e))?;
        Ok(Unsigned {
            method: parts.method,
            body,
        })
    }
}

impl<S: Store> FromRequest<Arc<AppState<S>>> for Signed {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &Arc<AppState<S>>) -> Result<Self, Failure> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let body = read_body(&parts, body, state.config.body_limit)
            .await
            .map_err(|e| Failure::at(path, e))?;
        let token = verify_token(state, &parts)
            .await
            .map_err(|e| Failure::at(path, e))?;
        let certificates = parts
            .extensions
            .get::<PeerCertificates>()
            .cloned()
            .unwrap_or_default();
        let peer = state
            .auth
            .authenticate(
                parts.method.as_str(),
                path,
                &parts.headers,
                &certificates,
                &body,
                |claimed| {
                    crate::ratelimit::refusing(
                        &state.limiters.per_provider,
                        claimed,
                        "per provider",
                    )
                },
            )
            .await
            .map_err(|e| Failure::at(path, e))?;
        super::observe::peer(peer.domain());
        // From here on the request counts as its provider's, not its
        // address's, in flight (a refused one spends no rate token).
        if let Some(slot) = parts.extensions.get::<RequestSlot>() {
            let held = state
                .in_flight
                .per_provider
                .take(peer.domain())
                .map_err(|_| {
                    Failure::at(
                        path,
                        TransportError::RateLimited {
                            layer: "in flight per provider",
                            retry_after: 1,
                        },
                    )
                })?;
            slot.to_provider(held);
        }
        crate::ratelimit::take(&state.limiters.per_provider, peer.domain(), "per provider")
            .map_err(|e| Failure::at(path, e))?;
        // The other processes of this provider may have seen it: the
        // authenticator's cache knows only this one's requests.
        if let Some((nonce, expires_at)) = peer.nonce() {
            let now = state.clock.now();
            match state
                .service
                .store()
                .remember_nonce(peer.domain().as_str(), nonce, expires_at, now)
                .await
            {
                Ok(()) => {}
                Err(mimid_store::StoreError::Conflict) => {
                    return Err(Failure::at(
                        path,
                        TransportError::Authentication("nonce already used (replay)".into()),
                    ));
                }
                Err(e) => return Err(Failure::at(path, TransportError::from(e))),
            }
        }
        // Spent only now: a request its sender could not authenticate, or
        // over its provider's limit, keeps its token.
        spend_token(state, token)
            .await
            .map_err(|e| Failure::at(path, e))?;
        Ok(Signed { peer, body })
    }
}
