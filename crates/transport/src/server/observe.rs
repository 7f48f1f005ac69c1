//! What the server tells its operator: per request a counter by endpoint
//! and status and a latency histogram by endpoint, per refusal its reason
//! (`docs/operations.md`, "Metrics"), and the request's log span with its
//! id and, once authenticated, the peer's domain. Metrics go through the
//! `metrics` facade: without a recorder installed (tests, the demo) they
//! cost a few atomic loads.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use super::{Endpoint, RemoteAddr, client_api};
use crate::error::TransportError;

/// Requests answered, by `endpoint` and `status`.
pub const REQUESTS: &str = "mimid_requests_total";
/// Seconds from a request's arrival to its answer, by `endpoint`.
pub const REQUEST_SECONDS: &str = "mimid_request_duration_seconds";
/// Requests refused, by `reason`.
pub const REJECTED: &str = "mimid_rejected_requests_total";
/// Requests refused by a rate limit, by `layer`.
pub const RATE_LIMITED: &str = "mimid_rate_limited_requests_total";

/// The endpoint a path is counted under: the routed paths as they are
/// (the client API's DS endpoints as one), anything else as `other`, so
/// that a scan of random paths cannot add series.
pub fn endpoint_label(path: &str) -> &'static str {
    if let Some(endpoint) = Endpoint::from_path(path) {
        return endpoint.path();
    }
    client_api::label(path).unwrap_or("other")
}

/// The outermost layer: counts and times every answer, whoever gave it
/// (a rate limit, the timeout, a handler).
pub(super) async fn requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = endpoint_label(request.uri().path());
    let response = next.run(request).await;
    metrics::counter!(REQUESTS, "endpoint" => endpoint, "status" => response.status().as_str().to_owned())
        .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Counts a refusal by its reason (and a rate limit by its layer).
pub(crate) fn rejected(error: &TransportError) {
    metrics::counter!(REJECTED, "reason" => error.reason()).increment(1);
    if let TransportError::RateLimited { layer, .. } = error {
        metrics::counter!(RATE_LIMITED, "layer" => layer.to_lowercase().replace(' ', "_"))
            .increment(1);
    }
}

/// The log span of a request: its id (`x-request-id`, set by the layer
/// before), method, path and remote address; `peer` is filled in once the
/// sending provider is authenticated. Nothing of the body is logged.
pub(super) fn span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let remote = request
        .extensions()
        .get::<RemoteAddr>()
        .map(|RemoteAddr(addr)| tracing::field::display(*addr));
    tracing::info_span!(
        "request",
        id,
        method = %request.method(),
        endpoint = endpoint_label(request.uri().path()),
        remote,
        peer = tracing::field::Empty,
    )
}

/// Names the authenticated sending provider in the request's log span.
pub(crate) fn peer(domain: &mimid_wire::ProviderDomain) {
    tracing::Span::current().record("peer", domain.as_str());
}
