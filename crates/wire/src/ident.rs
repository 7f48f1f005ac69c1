//! Identifiers (`docs/protocol.md` section 2): provider domains, users,
//! clients, group IDs and message IDs.
//!
//! Each identifier has exactly one valid encoding, checked when it is
//! decoded or parsed, so two providers can compare them byte for byte.

use std::fmt;
use std::str::FromStr;

use crate::codec::{Reader, Wire, hex_array, wire_struct};
use crate::error::{DecodeError, EncodeError};

/// Longest identifier, in bytes.
pub const MAX_IDENTIFIER: usize = 255;

const SCHEME: &str = "mimi://";

/// Why a string is not a valid identifier.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentifierError(pub String);

fn check_domain(d: &str) -> Result<(), IdentifierError> {
    if d.is_empty() || d.len() > 253 {
        return Err(IdentifierError(format!(
            "domain must be 1..253 bytes, is {}",
            d.len()
        )));
    }
    // A provider is a host name under a top-level domain (RFC 1123 2.1,
    // RFC 3696 2): at least two labels, and a top label that is not all
    // digits, so that no IPv4 address is a domain.
    let mut labels = d.rsplit('.');
    let top = labels.next().unwrap_or_default();
    if labels.next().is_none() {
        return Err(IdentifierError(format!(
            "domain {d:?} has a single label; a provider domain has at least two"
        )));
    }
    if !top.is_empty() && top.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentifierError(format!(
            "domain {d:?} has an all-digit top label (an IPv4 address is no provider domain)"
        )));
    }
    for label in d.split('.') {
        let ok_len = (1..=63).contains(&label.len());
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_len || !ok_chars || label.starts_with('-') || label.ends_with('-') {
            return Err(IdentifierError(format!(
                "invalid domain label {label:?} in {d:?}"
            )));
        }
    }
    Ok(())
}

fn check_segment(kind: &str, s: &str) -> Result<(), IdentifierError> {
    let ok_chars = s.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'~' | b'-')
    });
    if !(1..=64).contains(&s.len()) || !ok_chars || s == "." || s == ".." {
        return Err(IdentifierError(format!("invalid {kind} {s:?}")));
    }
    Ok(())
}

fn check_total(s: &str) -> Result<(), IdentifierError> {
    if s.len() > MAX_IDENTIFIER {
        return Err(IdentifierError(format!(
            "identifier longer than {MAX_IDENTIFIER} bytes"
        )));
    }
    Ok(())
}

/// Splits `mimi://{domain}/{kind}/{rest}`.
fn split_uri<'s>(s: &'s str, kind: &str) -> Result<(&'s str, &'s str), IdentifierError> {
    check_total(s)?;
    let rest = s
        .strip_prefix(SCHEME)
        .ok_or_else(|| IdentifierError(format!("{s:?} does not start with {SCHEME}")))?;
    let (domain, tail) = rest
        .split_once('/')
        .ok_or_else(|| IdentifierError(format!("{s:?} has no path")))?;
    let tail = tail
        .strip_prefix(kind)
        .and_then(|t| t.strip_prefix('/'))
        .ok_or_else(|| IdentifierError(format!("{s:?} is not a /{kind}/ identifier")))?;
    check_domain(domain)?;
    Ok((domain, tail))
}

macro_rules! string_identifier {
    ($(#[$m:meta])* $name:ident, $wire_name:literal, $check:expr) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdentifierError;
            fn from_str(s: &str) -> Result<Self, IdentifierError> {
                let check: fn(&str) -> Result<(), IdentifierError> = $check;
                check(s)?;
                Ok($name(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdentifierError;
            fn try_from(s: String) -> Result<Self, IdentifierError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Wire for $name {
            const NAME: &'static str = $wire_name;
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let at = r.offset();
                let len = r.vec_len(MAX_IDENTIFIER)?;
                let bytes = r.take(len)?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|_| DecodeError::invalid(at, $wire_name, "not UTF-8"))?;
                s.parse().map_err(|e: IdentifierError| DecodeError::invalid(at, $wire_name, e.0))
            }
            fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
                crate::codec::write_vec_len(w, self.0.len())?;
                w.extend_from_slice(self.0.as_bytes());
                Ok(())
            }
            fn encoded_len(&self) -> usize {
                crate::codec::vec_len_len(self.0.len()) + self.0.len()
            }
        }
    };
}

string_identifier!(
    /// A provider: a lower-case DNS domain.
    ProviderDomain,
    "ProviderDomain",
    check_domain
);

string_identifier!(
    /// A user: `mimi://{domain}/u/{name}`.
    UserId,
    "UserID",
    |s| {
        let (_, name) = split_uri(s, "u")?;
        check_segment("user name", name)
    }
);

string_identifier!(
    /// A client: `mimi://{domain}/d/{name}/{device}`.
    ClientId,
    "ClientID",
    |s| {
        let (_, tail) = split_uri(s, "d")?;
        let (name, device) =
            tail.split_once('/').ok_or_else(|| IdentifierError(format!("{s:?} has no device")))?;
        check_segment("user name", name)?;
        check_segment("device", device)
    }
);

fn domain_of(s: &str) -> &str {
    s.strip_prefix(SCHEME)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
}

impl UserId {
    pub fn new(domain: &ProviderDomain, name: &str) -> Result<Self, IdentifierError> {
        format!("{SCHEME}{domain}/u/{name}").parse()
    }
    pub fn domain(&self) -> ProviderDomain {
        ProviderDomain(domain_of(&self.0).to_owned())
    }
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl ClientId {
    pub fn new(user: &UserId, device: &str) -> Result<Self, IdentifierError> {
        format!("{SCHEME}{}/d/{}/{device}", domain_of(&user.0), user.name()).parse()
    }
    pub fn domain(&self) -> ProviderDomain {
        ProviderDomain(domain_of(&self.0).to_owned())
    }
    /// The user this client belongs to.
    pub fn user(&self) -> UserId {
        let mut parts = self.0.rsplitn(3, '/');
        let _device = parts.next();
        let name = parts.next().unwrap_or_default();
        UserId(format!("{SCHEME}{}/u/{name}", domain_of(&self.0)))
    }
    pub fn device(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

wire_struct! {
    /// A group ID issued by a hub; its TLS encoding is the MLS `group_id`.
    pub struct GroupId {
        pub hub_domain: ProviderDomain,
        #[serde(with = "hex_array")]
        pub local_id: [u8; 16],
    }
}

impl GroupId {
    /// The MLS `group_id` bytes.
    pub fn to_mls_bytes(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(self.encoded_len());
        // Encoding a validated domain and 16 bytes cannot exceed any bound.
        let _ = self.encode(&mut w);
        w
    }

    /// Parses MLS `group_id` bytes.
    pub fn from_mls_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        GroupId::decode_exact(bytes, &crate::Limits::default())
    }
}

/// `opaque group_id<V>` whose content must be a [`GroupId`].
#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct GroupIdField(pub GroupId);

impl Wire for GroupIdField {
    const NAME: &'static str = "group_id";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.vec_len(r.limits().max_vector_bytes)?;
        r.bounded(len, GroupId::decode).map(GroupIdField)
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        crate::codec::write_vec_len(w, self.0.encoded_len())?;
        self.0.encode(w)
    }
    fn encoded_len(&self) -> usize {
        let n = self.0.encoded_len();
        crate::codec::vec_len_len(n) + n
    }
}

impl std::hash::Hash for GroupId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.hub_domain.hash(state);
        self.local_id.hash(state);
    }
}

/// A 16-byte delivery identifier.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct MessageId(#[serde(with = "hex_array")] pub [u8; 16]);

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::codec::hex_string(&self.0))
    }
}

impl Wire for MessageId {
    const NAME: &'static str = "MessageId";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        <[u8; 16]>::decode(r).map(MessageId)
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.0.encode(w)
    }
    fn encoded_len(&self) -> usize {
        16
    }
}
