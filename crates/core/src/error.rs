//! The core's typed errors (the hub's and the guest's) and their mapping
//! to `DSError` codes: the one place where a failure becomes a wire error
//! (and so an HTTP status).

use mimid_wire::{DSError, DecodeError, DecodeErrorKind, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    #[error("{0} is not served on this endpoint")]
    WrongEndpoint(&'static str),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    WrongRecipient(String),
    #[error("unknown group")]
    UnknownGroup,
    #[error("group id is already in use")]
    GroupExists,
    #[error("client signature: {0}")]
    ClientSignature(String),
    #[error("{0}")]
    NotAMember(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("wrong epoch: the current epoch is {current}")]
    WrongEpoch { current: u64 },
    #[error("invalid MLS message: {0}")]
    InvalidMls(String),
    #[error("invalid GroupInfo: {0}")]
    InvalidGroupInfo(String),
    #[error("{0}")]
    MissingWelcome(String),
    #[error("{0}")]
    MissingPendingProposals(String),
    #[error("no welcome information for epoch {0}")]
    NoWelcomeInformation(u64),
    #[error("malformed: {0}")]
    Malformed(String),
    /// A guest's check of the sending provider (`docs/protocol.md` 7).
    #[error("provider authentication: {0}")]
    ProviderAuthentication(String),
    /// A repeated `(sender, message_id)` with another body (7).
    #[error("message id {0} was used for another message")]
    MessageIdReuse(String),
    /// No such user of this provider (`docs/protocol.md` 9).
    #[error("{0}")]
    UnknownUser(String),
    /// No such client of this provider.
    #[error("{0}")]
    UnknownClient(String),
    /// The target user has no connection with the requester (9).
    #[error("{0}")]
    NotConnected(String),
    /// The recipient user blocked the requester (7).
    #[error("{0}")]
    Blocked(String),
    /// None of the target's clients has a KeyPackage of the kind (9).
    #[error("{0}")]
    NoKeyPackages(String),
    /// A `ds_add_users` adds users of the hub's own provider and the
    /// context has no client directory: the caller loads these users'
    /// clients into [`Context::directory`](crate::Context) and runs the
    /// step again. Never an answer (internal error if it escapes).
    #[error("the client directory of {0:?} is needed")]
    NeedsDirectory(Vec<mimid_wire::UserId>),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A body that does not decode (6.2 steps 1 and 2): another version is
/// `unsupported_version`, anything else `malformed_message`, with the
/// decoder's offset and field path as the text.
impl From<DecodeError> for HubError {
    fn from(e: DecodeError) -> Self {
        match e.kind {
            DecodeErrorKind::UnsupportedVersion(v) => HubError::UnsupportedVersion(v),
            _ => HubError::Malformed(e.to_string()),
        }
    }
}

impl HubError {
    /// The registry code of this error (`docs/protocol.md` section 10).
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            HubError::WrongEndpoint(_) => ErrorCode::WrongEndpoint,
            HubError::UnsupportedOperation(_) => ErrorCode::UnsupportedOperation,
            HubError::WrongRecipient(_) => ErrorCode::WrongRecipient,
            HubError::UnknownGroup => ErrorCode::UnknownGroup,
            HubError::GroupExists => ErrorCode::GroupExists,
            HubError::ClientSignature(_) => ErrorCode::ClientSignatureInvalid,
            HubError::NotAMember(_) => ErrorCode::NotAMember,
            HubError::NotAllowed(_) => ErrorCode::OperationNotAllowed,
            HubError::WrongEpoch { .. } => ErrorCode::WrongEpoch,
            HubError::InvalidMls(_) => ErrorCode::InvalidMlsMessage,
            HubError::InvalidGroupInfo(_) => ErrorCode::InvalidGroupInfo,
            HubError::MissingWelcome(_) => ErrorCode::MissingWelcome,
            HubError::MissingPendingProposals(_) => ErrorCode::MissingPendingProposals,
            HubError::NoWelcomeInformation(_) => ErrorCode::NoWelcomeInformation,
            HubError::Malformed(_) => ErrorCode::MalformedMessage,
            HubError::ProviderAuthentication(_) => ErrorCode::ProviderAuthenticationFailed,
            HubError::MessageIdReuse(_) => ErrorCode::MessageIdReuse,
            HubError::UnknownUser(_) => ErrorCode::UnknownUser,
            HubError::UnknownClient(_) => ErrorCode::UnknownClient,
            HubError::NotConnected(_) => ErrorCode::NotConnected,
            HubError::NoKeyPackages(_) => ErrorCode::NoKeyPackages,
            HubError::Blocked(_) => ErrorCode::Blocked,
            HubError::NeedsDirectory(_) | HubError::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The wire error, with its typed detail where the registry has one.
    pub fn to_ds_error(&self) -> DSError {
        match self {
            HubError::WrongEpoch { current } => DSError::wrong_epoch(*current),
            HubError::UnsupportedVersion(_) => {
                DSError::unsupported_version(vec![mimid_wire::PROTOCOL_VERSION])
            }
            // Internal details stay in the logs, not on the wire.
            HubError::NeedsDirectory(_) | HubError::Internal(_) => {
                DSError::text(ErrorCode::InternalError, "")
            }
            other => DSError::text(other.code(), other.to_string()),
        }
    }
}

/// Maps any OpenMLS processing error to an invalid-message error.
pub(crate) fn invalid<E: std::fmt::Debug>(e: E) -> HubError {
    HubError::InvalidMls(format!("{e:?}"))
}

pub(crate) fn internal<E: std::fmt::Debug>(e: E) -> HubError {
    HubError::Internal(format!("{e:?}"))
}
