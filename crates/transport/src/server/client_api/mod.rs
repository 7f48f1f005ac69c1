//! The client API (`docs/client-api.md`): how this provider's own clients
//! enrol, publish KeyPackages, connect, submit DS requests, and read and
//! acknowledge their queues. Not
//! MIMI: JSON bodies, binary fields in base64url, and every request but
//! enrolment signed by the client's own key ([`auth`]).

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mimid_store::Store;
use serde::Serialize;

use super::AppState;
use crate::error::TransportError;

mod auth;
mod connections;
mod ds;
mod enrol;
mod key_packages;
mod privacy_pass;
mod queue;

pub(crate) use auth::ClientReplay;
pub use enrol::invite;

/// The path prefix of the client API.
pub const PREFIX: &str = "/client/v1";

/// The client API's routes, whole paths (not nested: a signature covers
/// the path as the client sent it).
pub(super) fn routes<S: Store>() -> Router<Arc<AppState<S>>> {
    Router::new()
        .route(&format!("{PREFIX}/enrol"), post(enrol::handle::<S>))
        .route(
            &format!("{PREFIX}/key_packages"),
            post(key_packages::handle::<S>),
        )
        .route(&format!("{PREFIX}/queue"), get(queue::read::<S>))
        .route(&format!("{PREFIX}/ack"), post(queue::acknowledge::<S>))
        .route(
            &format!("{PREFIX}/key_packages/fetch"),
            post(connections::fetch::<S>),
        )
        .route(
            &format!("{PREFIX}/connect"),
            post(connections::connect::<S>),
        )
        .route(
            &format!("{PREFIX}/connection_requests"),
            get(connections::list::<S>),
        )
        .route(
            &format!("{PREFIX}/connection_requests/settle"),
            post(connections::settle::<S>),
        )
        .route(&format!("{PREFIX}/ds/{{endpoint}}"), post(ds::handle::<S>))
        .route(
            &format!("{PREFIX}/privacy_pass/token-request"),
            post(privacy_pass::issue::<S>),
        )
        .route(
            &format!("{PREFIX}/privacy_pass/issuer"),
            get(privacy_pass::issuer::<S>),
        )
}

/// The metric label of a client API path (`None`: not one of its routes).
pub(crate) fn label(path: &str) -> Option<&'static str> {
    const ROUTES: [&str; 8] = [
        "/client/v1/enrol",
        "/client/v1/key_packages",
        "/client/v1/queue",
        "/client/v1/ack",
        "/client/v1/key_packages/fetch",
        "/client/v1/connect",
        "/client/v1/connection_requests",
        "/client/v1/connection_requests/settle",
    ];
    if let Some(route) = ROUTES.iter().find(|r| **r == path) {
        return Some(route);
    }
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.starts_with("/ds/"))
        .then_some("/client/v1/ds/{endpoint}")
}

/// A refused client API request: the status of its error code and a JSON
/// body naming it.
#[derive(Debug)]
pub(crate) struct ApiFailure(pub TransportError);

impl<E: Into<TransportError>> From<E> for ApiFailure {
    fn from(e: E) -> Self {
        ApiFailure(e.into())
    }
}

#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let error = self.0.to_ds_error();
        let status = StatusCode::from_u16(error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        tracing::debug!(%status, error = %self.0, "client API request refused");
        super::observe::rejected(&self.0);
        let mut response = json(
            status,
            &ErrorBody {
                code: error.code.name(),
                message: self.0.to_string(),
            },
        );
        if let mimid_wire::ErrorDetail::RetryAfter(seconds) = error.detail {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // A peer's Privacy Pass challenge, passed on (connections.rs).
        if let Some(challenge) = self.0.www_authenticate() {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        response
    }
}

/// A JSON answer.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Decodes a base64url field (padding optional).
pub(crate) fn unbase64(field: &str, value: &str) -> Result<Vec<u8>, TransportError> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|e| TransportError::Malformed(format!("{field}: not base64url: {e}")))
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JSON body of type `T`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, TransportError> {
    serde_json::from_slice(body).map_err(|e| TransportError::Malformed(format!("JSON body: {e}")))
}
