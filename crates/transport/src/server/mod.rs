//! The HTTPS server: routes, the order of checks, the accept loop.
//!
//! A request's way in: the connection caps, TLS (rustls, 1.3 only; the
//! client certificate, if any, is attached to every request of its
//! connection), the connection's timers (`listen`, `watch`) → tower layers
//! (request id, tracing, the address's rate limit and requests in flight,
//! timeout) → routing (unknown path 404, method 405)
//! → the body extractor (content type 415, size 413) → the Privacy Pass
//! token of a guarded endpoint, verified (401 `privacy_pass_required`) →
//! provider authentication (401, or 503 when the sender's keys cannot be
//! fetched) → the provider's requests in flight and rate limit (429) → the
//! token spent (401) → the handler: decode (400), the hub, encode.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mimid_core::DsEndpoint;
use mimid_service::HubService;
use mimid_store::Store;
use mimid_wire::{
    DSError, DSResponse, DSResponseBody, ErrorDetail, Limits, ProviderDomain,
    VerificationKeyResponse, VerificationKeyResult, Wire,
};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{AuthConfig, Authenticator};
use crate::client::{OCTET_STREAM, TransportClient};
use crate::clock::Clock;
use crate::discovery::WELL_KNOWN_PATH;
use crate::error::TransportError;

pub mod client_api;
mod connection_key_packages;
mod connection_request;
mod deliver_message;
mod ds;
mod external_commit_information;
mod extract;
mod group_key_packages;
mod group_operation;
mod listen;
pub mod observe;
mod verification_key;
mod watch;
mod welcome_information;
mod well_known;

pub use extract::{Signed, Unsigned};
pub use listen::{RunningServer, serve};
pub use watch::BodyTimedOut;

/// Settings of the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This provider's domain: the `recipient` of the signatures it
    /// accepts, the `provider` of its keys.
    pub domain: ProviderDomain,
    /// `host[:port]` of this provider's DS, served on the well-known path.
    pub ds_authority: String,
    /// Largest request body (4 MiB).
    pub body_limit: usize,
    /// Longest time a request may take (30 s; then 503 `unavailable`).
    pub request_timeout: Duration,
    pub limits: Limits,
    pub auth: AuthConfig,
    /// KeyPackages (`/connection_key_packages`, `/group_key_packages`).
    pub people: mimid_service::people::PeopleConfig,
    /// Per remote IP and per sending provider.
    pub rate_limits: crate::ratelimit::RateLimits,
    /// Timeouts and caps of connections and requests in flight (the accept
    /// loop takes the connection part: `serve`).
    pub connections: crate::connections::ConnectionLimits,
    /// Privacy Pass: the endpoints that need a token, the issuers whose
    /// tokens are accepted, this provider's issuer (`None`: off).
    pub privacy_pass: Option<Arc<crate::privacy_pass::PrivacyPass>>,
}

impl ServerConfig {
    pub fn new(domain: ProviderDomain, ds_authority: impl Into<String>) -> Self {
        ServerConfig {
            domain,
            ds_authority: ds_authority.into(),
            body_limit: mimid_wire::DEFAULT_BODY_LIMIT,
            request_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            auth: AuthConfig::default(),
            people: mimid_service::people::PeopleConfig::default(),
            rate_limits: crate::ratelimit::RateLimits::default(),
            connections: crate::connections::ConnectionLimits::default(),
            privacy_pass: None,
        }
    }
}

/// What the handlers share.
pub struct AppState<S: Store> {
    service: Arc<HubService<S>>,
    /// The guest side: what hubs deliver for this provider's clients.
    guest: mimid_service::guest::Guest,
    /// This provider's users' KeyPackages.
    people: mimid_service::people::People,
    /// Nonces of client API requests seen in their window.
    client_replay: client_api::ClientReplay,
    clock: Arc<dyn Clock>,
    /// To other providers, for the client API's requests.
    client: Arc<TransportClient>,
    auth: Authenticator,
    keys: crate::keys::KeyRing,
    limiters: crate::ratelimit::Limiters,
    in_flight: crate::connections::InFlight,
    config: ServerConfig,
}

impl<S: Store> AppState<S> {
    /// `client` fetches the keys of senders; `clock` gives the time of the
    /// signature checks.
    /// `keys`: a [`ProviderKeys`](crate::keys::ProviderKeys), or the client's
    /// [`KeyRing`](crate::keys::KeyRing) to share its replacements.
    pub fn new(
        service: Arc<HubService<S>>,
        keys: impl Into<crate::keys::KeyRing>,
        config: ServerConfig,
        client: Arc<TransportClient>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let auth = Authenticator::new(
            config.auth.clone(),
            config.domain.clone(),
            config.limits.clone(),
            clock.clone(),
            client.clone(),
            service.batch_verifier(),
        );
        Arc::new(AppState {
            guest: mimid_service::guest::Guest::new(config.domain.clone()),
            people: mimid_service::people::People::new(
                config.domain.clone(),
                config.people.clone(),
            ),
            client_replay: client_api::ClientReplay::default(),
            clock,
            client,
            service,
            auth,
            keys: keys.into(),
            limiters: crate::ratelimit::Limiters::new(&config.rate_limits),
            in_flight: crate::connections::InFlight::new(&config.connections),
            config,
        })
    }
}

/// The paths this server routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    GroupOperation,
    WelcomeInformation,
    ExternalCommitInformation,
    VerificationKey,
    DeliverMessage,
    ConnectionRequest,
    ConnectionKeyPackages,
    GroupKeyPackages,
    WellKnown,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::GroupOperation,
        Endpoint::WelcomeInformation,
        Endpoint::ExternalCommitInformation,
        Endpoint::VerificationKey,
        Endpoint::DeliverMessage,
        Endpoint::ConnectionRequest,
        Endpoint::ConnectionKeyPackages,
        Endpoint::GroupKeyPackages,
        Endpoint::WellKnown,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::GroupOperation => "/group_operation",
            Endpoint::WelcomeInformation => "/welcome_information",
            Endpoint::ExternalCommitInformation => "/external_commit_information",
            Endpoint::VerificationKey => "/verification_key",
            Endpoint::DeliverMessage => "/deliver_message",
            Endpoint::ConnectionRequest => "/connection_request",
            Endpoint::ConnectionKeyPackages => "/connection_key_packages",
            Endpoint::GroupKeyPackages => "/group_key_packages",
            Endpoint::WellKnown => WELL_KNOWN_PATH,
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// The endpoint's response struct with its `error` arm
    /// (`VerificationKeyResponse` on `/verification_key`,
    /// `QueueingServiceResponse` echoing `message_id` on `/deliver_message`,
    /// else `DSResponse`).
    pub fn error_body(
        endpoint: Option<Self>,
        error: &DSError,
        message_id: Option<mimid_wire::MessageId>,
    ) -> Vec<u8> {
        let encoded = match endpoint {
            Some(Endpoint::DeliverMessage | Endpoint::ConnectionRequest) => {
                mimid_service::guest::qs_response(
                    message_id.unwrap_or(mimid_wire::MessageId([0; 16])),
                    Err(error.clone()),
                )
                .to_bytes()
            }
            Some(Endpoint::VerificationKey) => VerificationKeyResponse {
                version: 1,
                result: VerificationKeyResult::Error(error.clone()),
            }
            .to_bytes(),
            Some(Endpoint::ConnectionKeyPackages) => mimid_wire::ConnectionKeyPackageResponse {
                version: 1,
                result: mimid_wire::KeyPackagesResult::Error(error.clone()),
            }
            .to_bytes(),
            Some(Endpoint::GroupKeyPackages) => mimid_wire::GroupKeyPackageResponse {
                version: 1,
                result: mimid_wire::KeyPackagesResult::Error(error.clone()),
            }
            .to_bytes(),
            _ => DSResponse {
                protocol_version: 1,
                response_body: DSResponseBody::Error(error.clone()),
            }
            .to_bytes(),
        };
        encoded.unwrap_or_default()
    }
}

impl From<DsEndpoint> for Endpoint {
    fn from(e: DsEndpoint) -> Self {
        match e {
            DsEndpoint::GroupOperation => Endpoint::GroupOperation,
            DsEndpoint::WelcomeInformation => Endpoint::WelcomeInformation,
            DsEndpoint::ExternalCommitInformation => Endpoint::ExternalCommitInformation,
        }
    }
}

/// A refused request: the one place errors become HTTP answers.
#[derive(Debug)]
pub struct Failure {
    endpoint: Option<Endpoint>,
    error: TransportError,
    /// The request's `message_id`, echoed by a `QueueingServiceResponse`
    /// (16 zero bytes when the body was refused before it decoded, 3.1).
    message_id: Option<mimid_wire::MessageId>,
}

impl Failure {
    pub fn new(endpoint: Option<Endpoint>, error: impl Into<TransportError>) -> Self {
        Failure {
            endpoint,
            error: error.into(),
            message_id: None,
        }
    }

    /// The same failure, answered with `message_id` echoed.
    pub(crate) fn echoing(mut self, message_id: mimid_wire::MessageId) -> Self {
        self.message_id = Some(message_id);
        self
    }
    pub(crate) fn at(path: &str, error: impl Into<TransportError>) -> Self {
        Failure::new(Endpoint::from_path(path), error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let error = self.error.to_ds_error();
        let status = StatusCode::from_u16(error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        tracing::debug!(endpoint = ?self.endpoint, %status, error = %self.error, "refused");
        observe::rejected(&self.error);
        let body = Endpoint::error_body(self.endpoint, &error, self.message_id);
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        if let ErrorDetail::RetryAfter(seconds) = error.detail {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.error.www_authenticate() {
            headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        response
    }
}

/// A 200 answer carrying an encoded response struct.
pub(crate) fn ok_body(
    endpoint: Endpoint,
    body: Result<Vec<u8>, mimid_wire::EncodeError>,
) -> Response {
    match body {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM))],
            bytes,
        )
            .into_response(),
        Err(e) => {
            Failure::new(Some(endpoint), TransportError::Internal(e.to_string())).into_response()
        }
    }
}

async fn not_found() -> Failure {
    Failure::new(None, TransportError::NotFound)
}

async fn method_not_allowed(uri: Uri) -> Failure {
    Failure::at(uri.path(), TransportError::MethodNotAllowed)
}

async fn timed_out(uri: Uri, error: tower::BoxError) -> Failure {
    if error.is::<tower::timeout::error::Elapsed>() {
        Failure::at(uri.path(), TransportError::Timeout)
    } else {
        Failure::at(uri.path(), TransportError::Internal(error.to_string()))
    }
}

/// The first checks of a MIMI request, before its path, headers or body are
/// looked at: its remote IP's rate limit (`docs/protocol.md` 3.4), then its
/// requests in flight (3.5): the request holds one of its address's until
/// its answer is ready, or until it is authenticated as a provider's
/// (`Signed` swaps it for one of the provider's). The client API (the
/// provider's own clients, perhaps many behind one address) is not counted
/// here.
async fn per_ip<S: Store>(
    axum::extract::State(state): axum::extract::State<Arc<AppState<S>>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(RemoteAddr(remote)) = request.extensions().get::<RemoteAddr>().copied() else {
        return next.run(request).await;
    };
    if request.uri().path().starts_with(client_api::PREFIX) {
        return next.run(request).await;
    }
    if let Err(limited) = crate::ratelimit::take(&state.limiters.per_ip, &remote.ip(), "per IP") {
        return Failure::at(request.uri().path(), limited).into_response();
    }
    let slot = match state.in_flight.per_ip.take(&remote.ip()) {
        Ok(held) => crate::connections::RequestSlot::ip(held),
        Err(_) => {
            let over = TransportError::RateLimited {
                layer: "in flight per IP",
                retry_after: 1,
            };
            return Failure::at(request.uri().path(), over).into_response();
        }
    };
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    drop(slot);
    response
}

/// The remote address of a request's connection (set by the accept loop).
#[derive(Clone, Copy, Debug)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// The router: one handler per endpoint of the seed, and the client API.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    let timeout = state.config.request_timeout;
    Router::new()
        .route(
            Endpoint::GroupOperation.path(),
            post(group_operation::handle::<S>).fallback(method_not_allowed),
        )
        .route(
            Endpoint::WelcomeInformation.path(),
            post(welcome_information::handle::<S>)
                .get(welcome_information::handle::<S>)
                .head(method_not_allowed)
                .fallback(method_not_allowed),
        )
        .route(
            Endpoint::ExternalCommitInformation.path(),
            post(external_commit_information::handle::<S>)
                .get(external_commit_information::handle::<S>)
                .head(method_not_allowed)
                .fallback(method_not_allowed),
        )
        .route(
            Endpoint::VerificationKey.path(),
            post(verification_key::handle::<S>)
                .get(verification_key::handle::<S>)
                .head(method_not_allowed)
                .fallback(method_not_allowed),
        )
        .route(
            Endpoint::DeliverMessage.path(),
            post(deliver_message::handle::<S>).fallback(method_not_allowed),
        )
        .route(
            Endpoint::ConnectionRequest.path(),
            post(connection_request::handle::<S>).fallback(method_not_allowed),
        )
        .route(
            Endpoint::ConnectionKeyPackages.path(),
            post(connection_key_packages::handle::<S>).fallback(method_not_allowed),
        )
        .route(
            Endpoint::GroupKeyPackages.path(),
            post(group_key_packages::handle::<S>).fallback(method_not_allowed),
        )
        .route(
            Endpoint::WellKnown.path(),
            get(well_known::handle::<S>)
                .head(method_not_allowed)
                .fallback(method_not_allowed),
        )
        .merge(client_api::routes::<S>())
        .fallback(not_found)
        .with_state(state.clone())
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(observe::requests))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(observe::span)
                        .on_response(
                            tower_http::trace::DefaultOnResponse::new()
                                .level(tracing::Level::INFO)
                                .latency_unit(tower_http::LatencyUnit::Micros),
                        ),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(axum::middleware::from_fn_with_state(state, per_ip::<S>))
                .layer(HandleErrorLayer::new(timed_out))
                .timeout(timeout),
        )
}
