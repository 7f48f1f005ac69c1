//! `mimid-transport`: the MIMI transport over HTTPS (`docs/protocol.md`
//! sections 3, 4, 8 and 10; layer 4 of `docs/architecture.md`).
//!
//! - [`server`]: an axum router over rustls (TLS 1.3 only, HTTP/1.1 and h2
//!   by ALPN) that serves a [`mimid_service::HubService`]: the three DS
//!   endpoints, `/verification_key` and the discovery well-known path.
//!   Requests pass the checks of 3.1 in a fixed order (path, method, content
//!   type, size, provider authentication, decoding); handlers are thin.
//! - [`auth`]: provider authentication (signature, mutual TLS or both, per
//!   peer). Its output, [`auth::Authenticated`], cannot be built elsewhere.
//! - [`client`]: the HTTPS client: discovery (3.3), signed requests, key
//!   fetching.
//! - [`keys`]: this provider's Ed25519 keys and their file format.
//! - [`tls`]: loading certificates and building rustls configurations.
//! - [`connections`], [`ratelimit`]: what a peer may hold of the server
//!   (connections, requests in flight, time) and how often it may ask.
//!
//! Time comes from a [`Clock`], so tests move it instead of sleeping.

pub mod auth;
pub mod cert_slot;
pub mod client;
mod clock;
pub mod connections;
pub mod courier;
pub mod discovery;
mod error;
pub mod keys;
pub mod loopback;
pub mod node;
pub mod privacy_pass;
pub mod ratelimit;
pub mod relay;
pub mod server;
pub mod signature;
pub mod tls;

pub use auth::{AuthConfig, AuthMode, Authenticated, PeerModes};
pub use cert_slot::CertSlot;
pub use client::{ClientConfig, ClientError, Reply, TransportClient};
pub use clock::{Clock, ManualClock, SystemClock};
pub use discovery::{Authority, DiscoveryConfig, DiscoveryError};
pub use error::TransportError;
pub use keys::{KeyFileError, KeyRing, ProviderKey, ProviderKeys};
pub use server::{Endpoint, RunningServer, ServerConfig, serve};
