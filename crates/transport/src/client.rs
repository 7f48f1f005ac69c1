//! The HTTPS client: discovery, signed requests, key fetching.
//!
//! One `reqwest` client (connection reuse, h2 where the server offers it
//! by ALPN) over a preconfigured rustls configuration (TLS 1.3 only, the
//! configured trust anchors, an optional client certificate for mutual
//! TLS). Every request is a POST, also on the information endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mimid_core::DsEndpoint;
use mimid_wire::{
    DSError, DSRequest, DSResponse, DecodeError, EncodeError, Limits, ProviderDomain,
    VerificationKeyOk, VerificationKeyRequest, VerificationKeyResponse, VerificationKeyResult,
    Wire,
};

use crate::auth::PeerModes;
use crate::clock::Clock;
use crate::discovery::{
    Authority, DiscoveryCache, DiscoveryConfig, DiscoveryError, Lookup, WELL_KNOWN_PATH, max_age,
    parse_ds_domain,
};
use crate::keys::{KeyRing, ProviderKeys};
use crate::server::Endpoint;
use crate::signature::{
    PROVIDER_SIGNATURE_HEADER, SENDER_HEADER, SignedRequest, encode_header, random_nonce,
};

/// The media type of every MIMI body.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Settings of the client.
pub struct ClientConfig {
    /// This provider's domain (the `sender` of its signatures).
    pub domain: ProviderDomain,
    /// Signing keys: the current one signs.
    pub keys: ProviderKeys,
    /// How to authenticate to each peer: a signature header (`signature`),
    /// `MIMI-Sender` and the TLS client certificate (`mtls`), or both.
    pub modes: PeerModes,
    /// From [`crate::tls::client_config`] (a client certificate in it is
    /// presented to every server that asks).
    pub tls: rustls::ClientConfig,
    pub discovery: DiscoveryConfig,
    /// Static name resolution (host name -> address; the port comes from
    /// the URL), for tests and private networks.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Whole-request timeout (30 s).
    pub timeout: Duration,
    /// Largest response body read (4 MiB).
    pub body_limit: usize,
    pub limits: Limits,
}

impl ClientConfig {
    /// Defaults for everything but identity, keys and TLS.
    pub fn new(domain: ProviderDomain, keys: ProviderKeys, tls: rustls::ClientConfig) -> Self {
        ClientConfig {
            domain,
            keys,
            modes: PeerModes::default(),
            tls,
            discovery: DiscoveryConfig::default(),
            resolve: Vec::new(),
            timeout: Duration::from_secs(30),
            body_limit: mimid_wire::DEFAULT_BODY_LIMIT,
            limits: Limits::default(),
        }
    }
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Connecting, TLS, HTTP or a timeout.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
    #[error("no randomness: {0}")]
    Random(String),
    #[error("answer body larger than {0} bytes")]
    TooLarge(usize),
    /// The answer does not decode.
    #[error("HTTP {status}: undecodable answer: {error}")]
    Decode { status: u16, error: DecodeError },
    /// The peer answered with an error.
    #[error("HTTP {status}: {error}")]
    Refused { status: u16, error: DSError },
    /// The answer's struct and status disagree, or the answer is not for
    /// the provider asked.
    #[error("HTTP {status}: {reason}")]
    Unexpected { status: u16, reason: String },
}

impl ClientError {
    /// The peer could not be reached or did not answer (as opposed to an
    /// answer that refuses or that is wrong).
    pub fn is_unreachable(&self) -> bool {
        match self {
            ClientError::Discovery(_) | ClientError::Http(_) => true,
            ClientError::Refused { status, .. } | ClientError::Unexpected { status, .. } => {
                *status >= 500
            }
            _ => false,
        }
    }
}

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: bytes::Bytes,
    /// `Retry-After`, in seconds, when the answer has one.
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` (a Privacy Pass challenge), when the answer has
    /// one.
    pub challenge: Option<http::HeaderValue>,
}

/// The transport's HTTPS client.
pub struct TransportClient {
    http: reqwest::Client,
    discovery: DiscoveryCache,
    domain: ProviderDomain,
    keys: KeyRing,
    modes: PeerModes,
    clock: Arc<dyn Clock>,
    body_limit: usize,
    limits: Limits,
}

impl TransportClient {
    pub fn new(config: ClientConfig, clock: Arc<dyn Clock>) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(config.tls)
            .https_only(true)
            // reqwest's default, stated: no Nagle delay on requests.
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)));
        for (host, addr) in &config.resolve {
            builder = builder.resolve(host, *addr);
        }
        Ok(TransportClient {
            http: builder.build()?,
            discovery: DiscoveryCache::new(config.discovery),
            domain: config.domain,
            keys: KeyRing::new(config.keys),
            modes: config.modes,
            clock,
            body_limit: config.body_limit,
            limits: config.limits,
        })
    }

    /// The keys it signs with (shared with the server, to be replaced).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn domain(&self) -> &ProviderDomain {
        &self.domain
    }

    /// Where `domain`'s DS is: an override, a cached answer, or
    /// `GET https://{domain}/.well-known/mimi/ds-domain`.
    pub async fn discover(&self, domain: &ProviderDomain) -> Result<Authority, DiscoveryError> {
        let now = self.clock.now();
        match self.discovery.lookup(domain, now) {
            Lookup::Known(a) => return Ok(a),
            Lookup::Failed(e) => return Err(e),
            Lookup::Fetch => {}
        }
        let port = self.discovery.config().well_known_port;
        let url = if port == 443 {
            format!("https://{domain}{WELL_KNOWN_PATH}")
        } else {
            format!("https://{domain}:{port}{WELL_KNOWN_PATH}")
        };
        let answer = async {
            let response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                return Err(format!("HTTP {status}"));
            }
            let cache = response
                .headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .and_then(max_age);
            let body = read_limited(response, 1024)
                .await
                .map_err(|e| e.to_string())?;
            let authority = parse_ds_domain(&body).map_err(|e| e.to_string())?;
            Ok((authority, cache))
        }
        .await;
        match answer {
            Ok((authority, cache)) => {
                self.discovery.found(domain, authority.clone(), cache, now);
                Ok(authority)
            }
            Err(reason) => {
                self.discovery.failed(domain, reason.clone(), now);
                Err(DiscoveryError::Failed {
                    domain: domain.to_string(),
                    reason,
                })
            }
        }
    }

    /// POSTs `body` to `path` on `recipient`'s DS, authenticated as this
    /// provider (signature header and/or `MIMI-Sender`, by the peer's
    /// mode). Any HTTP status is a [`Reply`].
    pub async fn post(
        &self,
        recipient: &ProviderDomain,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Reply, ClientError> {
        self.post_with_token(recipient, path, body, None).await
    }

    /// [`TransportClient::post`] with `authorization` (an `Authorization:
    /// PrivateToken` value of a Privacy Pass token, `docs/protocol.md`
    /// 3.6) if given: a client's token, carried on its behalf.
    pub async fn post_with_token(
        &self,
        recipient: &ProviderDomain,
        path: &str,
        body: Vec<u8>,
        authorization: Option<http::HeaderValue>,
    ) -> Result<Reply, ClientError> {
        let authority = self.discover(recipient).await?;
        let mode = self.modes.mode_for(recipient);
        let mut request = self
            .http
            .post(format!("https://{authority}{path}"))
            .header(http::header::CONTENT_TYPE, OCTET_STREAM);
        if mode.signature() {
            let signature = SignedRequest {
                sender: &self.domain,
                recipient,
                method: "POST",
                path,
                body: &body,
                timestamp: self.clock.now(),
                nonce: random_nonce().map_err(|e| ClientError::Random(e.to_string()))?,
            }
            .sign(self.keys.get().current())?;
            request = request.header(PROVIDER_SIGNATURE_HEADER, encode_header(&signature)?);
        }
        if mode.mtls() {
            request = request.header(SENDER_HEADER, self.domain.as_str());
        }
        if let Some(authorization) = authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        let response = request.body(body).send().await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let challenge = response
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .cloned();
        let body = read_limited(response, self.body_limit).await?;
        Ok(Reply {
            status,
            body,
            retry_after,
            challenge,
        })
    }

    /// Sends a DS request to the hub `recipient` on `endpoint`'s path and
    /// decodes the `DSResponse`, whatever its status (an error arm comes
    /// with the status of its code).
    pub async fn ds_request(
        &self,
        recipient: &ProviderDomain,
        endpoint: DsEndpoint,
        request: &DSRequest,
    ) -> Result<(u16, DSResponse), ClientError> {
        let reply = self
            .post(
                recipient,
                Endpoint::from(endpoint).path(),
                request.to_bytes()?,
            )
            .await?;
        let response = DSResponse::decode_exact(&reply.body, &self.limits).map_err(|error| {
            ClientError::Decode {
                status: reply.status,
                error,
            }
        })?;
        Ok((reply.status, response))
    }

    /// `provider`'s keys from its `/verification_key` (unsigned). An answer
    /// for another provider is refused.
    pub async fn fetch_keys(
        &self,
        provider: &ProviderDomain,
    ) -> Result<VerificationKeyOk, ClientError> {
        let authority = self.discover(provider).await?;
        let body = VerificationKeyRequest {
            version: 1,
            provider: provider.clone(),
        }
        .to_bytes()?;
        let response = self
            .http
            .post(format!(
                "https://{authority}{}",
                Endpoint::VerificationKey.path()
            ))
            .header(http::header::CONTENT_TYPE, OCTET_STREAM)
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = read_limited(response, self.body_limit).await?;
        let answer = VerificationKeyResponse::decode_exact(&body, &self.limits)
            .map_err(|error| ClientError::Decode { status, error })?;
        match answer.result {
            VerificationKeyResult::Ok(ok) if status == 200 && ok.provider == *provider => Ok(ok),
            VerificationKeyResult::Ok(ok) if status == 200 => Err(ClientError::Unexpected {
                status,
                reason: format!("keys of {} when {provider} was asked for", ok.provider),
            }),
            VerificationKeyResult::Ok(_) => Err(ClientError::Unexpected {
                status,
                reason: "ok answer with an error status".into(),
            }),
            VerificationKeyResult::Error(error) => Err(ClientError::Refused { status, error }),
        }
    }
}

/// Reads a response body, refusing more than `limit` bytes.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, ClientError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ClientError::TooLarge(limit));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(ClientError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
