//! Decoding and encoding errors.
//!
//! A decoding error names the byte offset (from the start of the body) and
//! the field path, because the person reading it is an operator with a
//! captured body and a hex dump.

use std::fmt;

use crate::dserror::{DSError, ErrorCode};

/// What was wrong with the bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("truncated: needed {needed} bytes, {available} left")]
    Truncated { needed: usize, available: usize },
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    #[error("invalid vector length encoding (non-minimal or reserved prefix)")]
    BadVectorLength,
    #[error("vector of {len} bytes exceeds the bound of {max}")]
    TooLong { len: usize, max: usize },
    #[error("more than {max} elements")]
    TooManyItems { max: usize },
    #[error("unknown value {0}")]
    UnknownValue(u64),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{what} is not valid MLS: {reason}")]
    Mls { what: &'static str, reason: String },
    /// A top-level body of another `DSProtocolVersion` than this profile's
    /// (`docs/protocol.md` 1.3): answered with `unsupported_version`, not
    /// `malformed_message`.
    #[error("unsupported protocol version {0} (supported: 1)")]
    UnsupportedVersion(u16),
    /// A vector that must hold at least one element is empty.
    #[error("empty, but at least one element is required")]
    Empty,
}

impl DecodeErrorKind {
    /// A stable snake_case name of the kind (the `kind` of the negative
    /// vectors, `docs/protocol.md` section 11).
    pub fn name(&self) -> &'static str {
        match self {
            DecodeErrorKind::Truncated { .. } => "truncated",
            DecodeErrorKind::TrailingBytes(_) => "trailing_bytes",
            DecodeErrorKind::BadVectorLength => "bad_vector_length",
            DecodeErrorKind::TooLong { .. } => "too_long",
            DecodeErrorKind::TooManyItems { .. } => "too_many_items",
            DecodeErrorKind::UnknownValue(_) => "unknown_value",
            DecodeErrorKind::Invalid { .. } => "invalid",
            DecodeErrorKind::Mls { .. } => "mls",
            DecodeErrorKind::UnsupportedVersion(_) => "unsupported_version",
            DecodeErrorKind::Empty => "empty",
        }
    }

    /// The `DSError` code a receiver answers this failure with: 400
    /// `unsupported_version` for another protocol version, 400
    /// `malformed_message` for everything else (`docs/protocol.md` 1.4).
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeErrorKind::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::MalformedMessage,
        }
    }
}

/// A decoding failure at `offset` inside the field `path`.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    pub offset: usize,
    /// Innermost last when displayed; stored innermost first.
    path: Vec<PathSegment>,
    pub kind: DecodeErrorKind,
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum PathSegment {
    Field(&'static str),
    Index(usize),
}

impl DecodeError {
    pub fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        DecodeError {
            offset,
            path: Vec::new(),
            kind,
        }
    }

    pub fn invalid(offset: usize, what: &'static str, reason: impl Into<String>) -> Self {
        Self::new(
            offset,
            DecodeErrorKind::Invalid {
                what,
                reason: reason.into(),
            },
        )
    }

    /// The same error with its offset moved by `by` bytes (an error found
    /// relative to a field, placed in the body).
    pub fn shifted(mut self, by: usize) -> Self {
        self.offset = self.offset.saturating_add(by);
        self
    }

    /// Adds an enclosing field name.
    pub fn within(mut self, field: &'static str) -> Self {
        self.path.push(PathSegment::Field(field));
        self
    }

    /// Adds an enclosing vector index.
    pub fn within_index(mut self, index: usize) -> Self {
        self.path.push(PathSegment::Index(index));
        self
    }

    /// The `DSError` code a receiver answers with (see
    /// [`DecodeErrorKind::code`]).
    pub fn code(&self) -> ErrorCode {
        self.kind.code()
    }

    /// The error a receiver answers with: `unsupported_version` listing the
    /// supported versions, or `malformed_message` whose text is this error
    /// (offset, field path, reason).
    pub fn to_ds_error(&self) -> DSError {
        match self.kind {
            DecodeErrorKind::UnsupportedVersion(_) => {
                DSError::unsupported_version(crate::ds::SUPPORTED_VERSIONS.to_vec())
            }
            _ => DSError::text(ErrorCode::MalformedMessage, self.to_string()),
        }
    }

    /// The field path, outermost first, e.g. `DSRequest.request_body.add_users`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.path.iter().rev() {
            match seg {
                PathSegment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.path(),
            self.offset,
            self.kind
        )
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A value that cannot be encoded (only reachable through values built in
/// code, never through decoded ones).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("vector of {0} bytes is longer than the encoding allows")]
    TooLong(usize),
    #[error("encoding failed: {0}")]
    Codec(String),
}
