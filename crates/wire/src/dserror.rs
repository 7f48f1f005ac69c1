//! `DSError` and its code registry (`docs/protocol.md` section 10).

use crate::codec::{Reader, Wire, rules, vec_len_len, write_vec_len};
use crate::error::{DecodeError, EncodeError};

macro_rules! error_codes {
    ($($(#[$m:meta])* $name:ident = $code:literal, $wire:literal, $status:literal;)*) => {
        /// The registry of `DSError` codes. Unknown codes are kept as
        /// [`ErrorCode::Unknown`]: receivers must accept them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$m])* $name,)*
            Unknown(u16),
        }

        impl ErrorCode {
            pub fn from_u16(code: u16) -> Self {
                match code { $($code => ErrorCode::$name,)* other => ErrorCode::Unknown(other) }
            }
            pub fn to_u16(self) -> u16 {
                match self { $(ErrorCode::$name => $code,)* ErrorCode::Unknown(c) => c }
            }
            /// The name in the registry.
            pub fn name(self) -> &'static str {
                match self { $(ErrorCode::$name => $wire,)* ErrorCode::Unknown(_) => "unknown" }
            }
            /// The HTTP status that carries this code.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$name => $status,)* ErrorCode::Unknown(_) => 500 }
            }
            /// Every registered code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];
        }
    };
}

error_codes! {
    MalformedMessage = 1, "malformed_message", 400;
    UnsupportedVersion = 2, "unsupported_version", 400;
    WrongEndpoint = 3, "wrong_endpoint", 400;
    UnsupportedOperation = 4, "unsupported_operation", 400;
    InvalidMlsMessage = 5, "invalid_mls_message", 400;
    InvalidGroupInfo = 6, "invalid_group_info", 400;
    MissingWelcome = 7, "missing_welcome", 400;
    MissingPendingProposals = 8, "missing_pending_proposals", 400;
    ProviderAuthenticationFailed = 9, "provider_authentication_failed", 401;
    ClientSignatureInvalid = 10, "client_signature_invalid", 403;
    NotAMember = 11, "not_a_member", 403;
    OperationNotAllowed = 12, "operation_not_allowed", 403;
    NotConnected = 13, "not_connected", 403;
    Blocked = 14, "blocked", 403;
    UnknownGroup = 15, "unknown_group", 404;
    UnknownUser = 16, "unknown_user", 404;
    UnknownClient = 17, "unknown_client", 404;
    NoWelcomeInformation = 18, "no_welcome_information", 404;
    NoKeyPackages = 19, "no_key_packages", 404;
    NotFound = 20, "not_found", 404;
    MethodNotAllowed = 21, "method_not_allowed", 405;
    WrongEpoch = 22, "wrong_epoch", 409;
    GroupExists = 23, "group_exists", 409;
    MessageIdReuse = 24, "message_id_reuse", 409;
    PayloadTooLarge = 25, "payload_too_large", 413;
    UnsupportedMediaType = 26, "unsupported_media_type", 415;
    WrongRecipient = 27, "wrong_recipient", 421;
    RateLimited = 28, "rate_limited", 429;
    InternalError = 29, "internal_error", 500;
    Unavailable = 30, "unavailable", 503;
    PrivacyPassRequired = 31, "privacy_pass_required", 401;
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.to_u16())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u16::deserialize(d).map(ErrorCode::from_u16)
    }
}

/// Code 0 is reserved: never sent, refused by the decoder.
pub const RESERVED_CODE: u16 = 0;

/// `DSError.detail`, in the form the registry gives the code.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorDetail {
    /// Informative UTF-8 text.
    Text(String),
    /// `wrong_epoch`: `uint64 current_epoch`.
    WrongEpoch { current_epoch: u64 },
    /// `unsupported_version`: `DSProtocolVersion supported<V>`.
    Supported(Vec<u16>),
    /// `payload_too_large`: `uint32 limit_bytes`.
    LimitBytes(u32),
    /// `rate_limited`, `unavailable`: `uint32 retry_after_seconds`.
    RetryAfter(u32),
    /// An unregistered code: opaque bytes, as hex in JSON.
    Opaque(crate::codec::Bytes),
}

/// `struct { uint16 code; opaque detail<V>; } DSError;`
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DSError {
    pub code: ErrorCode,
    pub detail: ErrorDetail,
}

impl DSError {
    /// An error whose detail is text (only for codes whose registry detail
    /// is text; the others have their own constructors).
    pub fn text(code: ErrorCode, text: impl Into<String>) -> Self {
        let mut text = text.into();
        // Text is informative; cut it (on a char boundary) to the default bound.
        let max = crate::Limits::default().max_error_detail;
        if text.len() > max {
            let mut cut = max;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        DSError {
            code,
            detail: ErrorDetail::Text(text),
        }
    }

    pub fn wrong_epoch(current_epoch: u64) -> Self {
        DSError {
            code: ErrorCode::WrongEpoch,
            detail: ErrorDetail::WrongEpoch { current_epoch },
        }
    }

    pub fn unsupported_version(supported: Vec<u16>) -> Self {
        DSError {
            code: ErrorCode::UnsupportedVersion,
            detail: ErrorDetail::Supported(supported),
        }
    }

    /// `unavailable` (503), retry after the given seconds.
    pub fn unavailable(retry_after_seconds: u32) -> Self {
        DSError {
            code: ErrorCode::Unavailable,
            detail: ErrorDetail::RetryAfter(retry_after_seconds),
        }
    }

    pub fn rate_limited(retry_after_seconds: u32) -> Self {
        DSError {
            code: ErrorCode::RateLimited,
            detail: ErrorDetail::RetryAfter(retry_after_seconds),
        }
    }

    fn detail_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Vec::new();
        match &self.detail {
            ErrorDetail::Text(t) => w.extend_from_slice(t.as_bytes()),
            ErrorDetail::WrongEpoch { current_epoch } => current_epoch.encode(&mut w)?,
            ErrorDetail::Supported(v) => crate::codec::encode_vec(v, &mut w)?,
            ErrorDetail::LimitBytes(n) | ErrorDetail::RetryAfter(n) => n.encode(&mut w)?,
            ErrorDetail::Opaque(b) => w.extend_from_slice(&b.0),
        }
        Ok(w)
    }

    fn detail_len(&self) -> usize {
        match &self.detail {
            ErrorDetail::Text(t) => t.len(),
            ErrorDetail::WrongEpoch { .. } => 8,
            ErrorDetail::Supported(v) => crate::codec::vec_encoded_len(v),
            ErrorDetail::LimitBytes(_) | ErrorDetail::RetryAfter(_) => 4,
            ErrorDetail::Opaque(b) => b.0.len(),
        }
    }
}

impl Wire for DSError {
    const NAME: &'static str = "DSError";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.offset();
        let code = ErrorCode::from_u16(r.field("code", u16::decode)?);
        if code.to_u16() == RESERVED_CODE {
            return Err(
                DecodeError::invalid(at, "code", "code 0 is reserved and never sent")
                    .within("code"),
            );
        }
        r.field("detail", |r| {
            let at = r.offset();
            let len = r.vec_len(r.limits().max_error_detail)?;
            let detail = r.bounded(len, |d| {
                Ok(match code {
                    ErrorCode::WrongEpoch => ErrorDetail::WrongEpoch {
                        current_epoch: u64::decode(d)?,
                    },
                    ErrorCode::UnsupportedVersion => {
                        let list = d.offset();
                        let supported: Vec<u16> = d.vec(d.limits().max_versions)?;
                        // A receiver supports at least one version.
                        rules::non_empty(&supported).map_err(|e| e.shifted(list))?;
                        ErrorDetail::Supported(supported)
                    }
                    ErrorCode::PayloadTooLarge => ErrorDetail::LimitBytes(u32::decode(d)?),
                    ErrorCode::RateLimited | ErrorCode::Unavailable => {
                        ErrorDetail::RetryAfter(u32::decode(d)?)
                    }
                    ErrorCode::Unknown(_) => {
                        ErrorDetail::Opaque(crate::codec::Bytes(d.take(len)?.to_vec()))
                    }
                    _ => {
                        let bytes = d.take(len)?;
                        let text = std::str::from_utf8(bytes).map_err(|_| {
                            DecodeError::invalid(at, "detail", "text detail is not UTF-8")
                        })?;
                        ErrorDetail::Text(text.to_owned())
                    }
                })
            })?;
            Ok(DSError { code, detail })
        })
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.code.to_u16().encode(w)?;
        let detail = self.detail_bytes()?;
        write_vec_len(w, detail.len())?;
        w.extend_from_slice(&detail);
        Ok(())
    }
    fn encoded_len(&self) -> usize {
        let n = self.detail_len();
        2 + vec_len_len(n) + n
    }
}

impl std::fmt::Display for DSError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code.name(), self.code.to_u16())?;
        match &self.detail {
            ErrorDetail::Text(t) if !t.is_empty() => write!(f, ": {t}"),
            ErrorDetail::Text(_) => Ok(()),
            ErrorDetail::WrongEpoch { current_epoch } => {
                write!(f, ": current epoch is {current_epoch}")
            }
            ErrorDetail::Supported(v) => write!(f, ": supported versions {v:?}"),
            ErrorDetail::LimitBytes(n) => write!(f, ": limit is {n} bytes"),
            ErrorDetail::RetryAfter(n) => write!(f, ": retry after {n} s"),
            ErrorDetail::Opaque(b) => write!(f, ": {b:?}"),
        }
    }
}
