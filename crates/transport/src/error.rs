//! The server's one error type and its mapping to a wire `DSError`.
//! The HTTP status is the code's (`docs/protocol.md` section 10); the
//! response body is the endpoint's response struct with its `error` arm
//! (`server::Endpoint::error_body`).

use mimid_service::ServiceError;
use mimid_wire::{DSError, DecodeError, ErrorCode, ErrorDetail};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No such path (404 `not_found`).
    #[error("no such path")]
    NotFound,
    /// 405 `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 415 `unsupported_media_type`.
    #[error("the content type must be application/octet-stream")]
    UnsupportedMediaType,
    /// 413 `payload_too_large`.
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 400 `malformed_message`: a header or the HTTP body could not be read.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// 401 `provider_authentication_failed`.
    #[error("provider authentication failed: {0}")]
    Authentication(String),
    /// 503 `unavailable`: the sender's keys could not be fetched (its fault
    /// is not proven), or a bounded table is full.
    #[error("unavailable: {reason}")]
    Unavailable { reason: String, retry_after: u32 },
    /// The body does not decode (400, or the decoder's own code).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// 421 `wrong_recipient`: the body names another provider.
    #[error("wrong recipient: {0}")]
    WrongRecipient(String),
    /// The hub refused the request or the store failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// 429 `rate_limited`: over a rate limit; try again after this long.
    #[error("rate limited: {layer}")]
    RateLimited {
        layer: &'static str,
        retry_after: u32,
    },
    /// The request took longer than the server allows (503 `unavailable`).
    #[error("request timed out")]
    Timeout,
    /// Another provider refused what this one asked for a client of the
    /// client API: its error, passed on.
    #[error("{provider} refused: {error}")]
    Peer { provider: String, error: DSError },
    /// 401 `privacy_pass_required`: the endpoint needs a Privacy Pass
    /// token and the request carries no valid, unspent one; answered with
    /// `challenge` in `WWW-Authenticate` (`docs/protocol.md` 3.5).
    #[error("privacy pass: {reason}")]
    PrivacyPassRequired {
        reason: String,
        challenge: http::HeaderValue,
    },
    /// 500 `internal_error`.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A store failure or a refusal of the core, through the service's error.
impl From<mimid_store::StoreError> for TransportError {
    fn from(e: mimid_store::StoreError) -> Self {
        TransportError::Service(e.into())
    }
}

impl From<mimid_core::HubError> for TransportError {
    fn from(e: mimid_core::HubError) -> Self {
        TransportError::Service(e.into())
    }
}

impl TransportError {
    /// A short, stable name of the refusal's kind (a metric label): the
    /// transport's own checks by name, the hub's refusals by their code.
    pub fn reason(&self) -> &'static str {
        match self {
            TransportError::NotFound => "not_found",
            TransportError::MethodNotAllowed => "method_not_allowed",
            TransportError::UnsupportedMediaType => "unsupported_media_type",
            TransportError::PayloadTooLarge { .. } => "payload_too_large",
            TransportError::Malformed(_) => "malformed",
            TransportError::Authentication(_) => "authentication",
            TransportError::Unavailable { .. } => "unavailable",
            TransportError::Decode(_) => "decode",
            TransportError::WrongRecipient(_) => "wrong_recipient",
            TransportError::Service(e) => e.to_ds_error().code.name(),
            TransportError::RateLimited { .. } => "rate_limited",
            TransportError::Timeout => "timeout",
            TransportError::Peer { .. } => "peer_refused",
            TransportError::PrivacyPassRequired { .. } => "privacy_pass_required",
            TransportError::Internal(_) => "internal",
        }
    }

    /// The wire error (its code gives the HTTP status).
    pub fn to_ds_error(&self) -> DSError {
        match self {
            TransportError::NotFound => DSError::text(ErrorCode::NotFound, self.to_string()),
            TransportError::MethodNotAllowed => {
                DSError::text(ErrorCode::MethodNotAllowed, self.to_string())
            }
            TransportError::UnsupportedMediaType => {
                DSError::text(ErrorCode::UnsupportedMediaType, self.to_string())
            }
            TransportError::PayloadTooLarge { limit } => DSError {
                code: ErrorCode::PayloadTooLarge,
                detail: ErrorDetail::LimitBytes(u32::try_from(*limit).unwrap_or(u32::MAX)),
            },
            TransportError::Malformed(m) => DSError::text(ErrorCode::MalformedMessage, m.clone()),
            TransportError::Authentication(m) => {
                DSError::text(ErrorCode::ProviderAuthenticationFailed, m.clone())
            }
            TransportError::Unavailable { retry_after, .. } => DSError::unavailable(*retry_after),
            TransportError::Decode(e) => e.to_ds_error(),
            TransportError::WrongRecipient(m) => {
                DSError::text(ErrorCode::WrongRecipient, m.clone())
            }
            TransportError::Service(e) => e.to_ds_error(),
            TransportError::RateLimited { retry_after, .. } => DSError::rate_limited(*retry_after),
            TransportError::Timeout => DSError::unavailable(1),
            TransportError::Peer { error, .. } => error.clone(),
            TransportError::PrivacyPassRequired { reason, .. } => {
                DSError::text(ErrorCode::PrivacyPassRequired, reason.clone())
            }
            TransportError::Internal(m) => DSError::text(ErrorCode::InternalError, m.clone()),
        }
    }

    /// The `WWW-Authenticate` value the answer carries, if any.
    pub fn www_authenticate(&self) -> Option<&http::HeaderValue> {
        match self {
            TransportError::PrivacyPassRequired { challenge, .. } => Some(challenge),
            _ => None,
        }
    }
}
