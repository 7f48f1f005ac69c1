//! The strict codec every wire struct is built from.
//!
//! The TLS presentation language primitives come from `tls_codec` (integers,
//! the minimal-length QUIC varint of RFC 9420 with its `mls` feature). What
//! this module adds is what an operator and a hostile peer need and
//! `tls_codec` does not give: absolute byte offsets and field paths in every
//! error, and vector bounds taken from runtime [`Limits`].

use std::fmt;

use tls_codec::{DeserializeBytes, Serialize as _};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::limits::Limits;

/// A type with a strict TLS encoding.
pub trait Wire: Sized {
    /// The struct's name as `docs/protocol.md` spells it.
    const NAME: &'static str;
    /// Decodes one value at the reader's position.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    /// Appends the encoding of `self`.
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// The exact number of bytes [`Wire::encode`] appends.
    fn encoded_len(&self) -> usize;

    /// Decodes a whole body: the value must use every byte.
    fn decode_exact(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, limits);
        Self::decode(&mut r)
            .and_then(|value| r.finish().map(|()| value))
            .map_err(|e| e.within(Self::NAME))
    }

    /// Encodes into a fresh buffer of exactly the right size.
    fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Vec::with_capacity(self.encoded_len());
        self.encode(&mut w)?;
        Ok(w)
    }
}

/// A cursor over a body with absolute offsets and a nested end bound.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    limits: &'a Limits,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], limits: &'a Limits) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
            limits,
        }
    }

    pub fn limits(&self) -> &'a Limits {
        self.limits
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.pos, kind)
    }

    /// Fails unless every byte up to the current bound has been consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.end {
            Ok(())
        } else {
            Err(self.error(DecodeErrorKind::TrailingBytes(self.end - self.pos)))
        }
    }

    /// Decodes `f` as the field `name`, so that errors carry the path.
    pub fn field<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        f(self).map_err(|e| e.within(name))
    }

    /// Takes `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let truncated = || DecodeErrorKind::Truncated {
            needed: n,
            available: self.remaining(),
        };
        if n > self.remaining() {
            return Err(self.error(truncated()));
        }
        let bytes = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| self.error(truncated()))?;
        self.pos += n;
        Ok(bytes)
    }

    /// The unread bytes up to the current bound, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// Marks `n` bytes of [`Reader::rest`] as consumed.
    pub fn advance(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(|_| ())
    }

    /// Reads a variable-length vector header and checks it against the byte
    /// bound and the bytes that are really there.
    pub fn vec_len(&mut self, max_bytes: usize) -> Result<usize, DecodeError> {
        let start = self.pos;
        let mut rest = self.rest();
        let before = rest.len();
        let (len, _) = tls_codec::vlen::read_length(&mut rest).map_err(|e| {
            DecodeError::new(
                start,
                match e {
                    tls_codec::Error::EndOfStream => DecodeErrorKind::Truncated {
                        needed: 1,
                        available: 0,
                    },
                    _ => DecodeErrorKind::BadVectorLength,
                },
            )
        })?;
        self.pos += before - rest.len();
        if len > max_bytes {
            return Err(DecodeError::new(
                start,
                DecodeErrorKind::TooLong {
                    len,
                    max: max_bytes,
                },
            ));
        }
        if len > self.remaining() {
            return Err(DecodeError::new(
                start,
                DecodeErrorKind::Truncated {
                    needed: len,
                    available: self.remaining(),
                },
            ));
        }
        Ok(len)
    }

    /// Runs `f` on a sub-reader bounded to the next `len` bytes and requires
    /// it to consume them all.
    pub fn bounded<T>(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if len > self.remaining() {
            return Err(self.error(DecodeErrorKind::Truncated {
                needed: len,
                available: self.remaining(),
            }));
        }
        let mut sub = Reader {
            buf: self.buf,
            pos: self.pos,
            end: self.pos + len,
            limits: self.limits,
        };
        let value = f(&mut sub)?;
        sub.finish()?;
        self.pos = sub.end;
        Ok(value)
    }

    /// Decodes a `T elements<V>` vector of at most `max_items` elements.
    pub fn vec<T: Wire>(&mut self, max_items: usize) -> Result<Vec<T>, DecodeError> {
        let len = self.vec_len(self.limits.max_vector_bytes)?;
        self.bounded(len, |sub| {
            let mut items = Vec::new();
            while sub.remaining() > 0 {
                if items.len() == max_items {
                    return Err(sub.error(DecodeErrorKind::TooManyItems { max: max_items }));
                }
                let index = items.len();
                let item = T::decode(sub).map_err(|e| e.within_index(index))?;
                items.push(item);
            }
            Ok(items)
        })
    }

    /// Decodes an MLS struct with OpenMLS from the unread bytes and returns
    /// it with the exact bytes it used.
    pub fn mls<T: DeserializeBytes>(
        &mut self,
        what: &'static str,
    ) -> Result<(T, &'a [u8]), DecodeError> {
        let rest = self.rest();
        // A body of random bytes must never panic the server, not even
        // inside the MLS library.
        let parsed = std::panic::catch_unwind(|| T::tls_deserialize_bytes(rest));
        match parsed {
            Ok(Ok((value, tail))) => {
                let used = rest.len() - tail.len();
                let bytes = self.take(used)?;
                Ok((value, bytes))
            }
            Ok(Err(e)) => Err(self.error(DecodeErrorKind::Mls {
                what,
                reason: e.to_string(),
            })),
            Err(_) => Err(self.error(DecodeErrorKind::Mls {
                what,
                reason: "decoder panicked".into(),
            })),
        }
    }
}

/// Appends a variable-length vector header for `len` content bytes.
pub fn write_vec_len(w: &mut Vec<u8>, len: usize) -> Result<(), EncodeError> {
    if len > MAX_VEC_LEN {
        return Err(EncodeError::TooLong(len));
    }
    tls_codec::vlen::write_length(w, len)
        .map(|_| ())
        .map_err(|_| EncodeError::TooLong(len))
}

/// The largest length RFC 9420 allows (30 bits).
pub const MAX_VEC_LEN: usize = (1 << 30) - 1;

/// Size of the varint header for `len` content bytes.
pub fn vec_len_len(len: usize) -> usize {
    match len {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        _ => 4,
    }
}

/// Encodes a `T elements<V>` vector.
pub fn encode_vec<T: Wire>(items: &[T], w: &mut Vec<u8>) -> Result<(), EncodeError> {
    let len: usize = items.iter().map(Wire::encoded_len).sum();
    write_vec_len(w, len)?;
    items.iter().try_for_each(|item| item.encode(w))
}

pub fn vec_encoded_len<T: Wire>(items: &[T]) -> usize {
    let len: usize = items.iter().map(Wire::encoded_len).sum();
    vec_len_len(len) + len
}

macro_rules! wire_int {
    ($($t:ty => $n:literal),*) => {$(
        impl Wire for $t {
            const NAME: &'static str = $n;
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let bytes = r.take(std::mem::size_of::<$t>())?;
                let mut arr = [0u8; std::mem::size_of::<$t>()];
                arr.copy_from_slice(bytes);
                Ok(<$t>::from_be_bytes(arr))
            }
            fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
                self.tls_serialize(w).map(|_| ()).map_err(|e| EncodeError::Codec(e.to_string()))
            }
            fn encoded_len(&self) -> usize {
                std::mem::size_of::<$t>()
            }
        }
    )*};
}
wire_int!(u8 => "uint8", u16 => "uint16", u32 => "uint32", u64 => "uint64");

impl<const N: usize> Wire for [u8; N] {
    const NAME: &'static str = "opaque[N]";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut arr = [0u8; N];
        arr.copy_from_slice(r.take(N)?);
        Ok(arr)
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        w.extend_from_slice(self);
        Ok(())
    }
    fn encoded_len(&self) -> usize {
        N
    }
}

/// `opaque data<V>`, bounded by [`Limits::max_vector_bytes`].
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Wire for Bytes {
    const NAME: &'static str = "opaque<V>";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.vec_len(r.limits().max_vector_bytes)?;
        Ok(Bytes(r.take(len)?.to_vec()))
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        write_vec_len(w, self.0.len())?;
        w.extend_from_slice(&self.0);
        Ok(())
    }
    fn encoded_len(&self) -> usize {
        vec_len_len(self.0.len()) + self.0.len()
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex_string(&self.0))
    }
}

/// `opaque data<0..255>`: a one-byte length prefix (RFC 8446).
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct ShortBytes(pub Vec<u8>);

impl Wire for ShortBytes {
    const NAME: &'static str = "opaque<0..255>";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = u8::decode(r)? as usize;
        Ok(ShortBytes(r.take(len)?.to_vec()))
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = u8::try_from(self.0.len()).map_err(|_| EncodeError::TooLong(self.0.len()))?;
        w.push(len);
        w.extend_from_slice(&self.0);
        Ok(())
    }
    fn encoded_len(&self) -> usize {
        1 + self.0.len()
    }
}

impl fmt::Debug for ShortBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex_string(&self.0))
    }
}

pub fn hex_string(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex at {i}"))
        })
        .collect()
}

macro_rules! hex_serde {
    ($t:ident) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&$crate::codec::hex_string(&self.0))
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                $crate::codec::parse_hex(&s)
                    .map($t)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_serde!(Bytes);
hex_serde!(ShortBytes);

/// Fixed-size byte arrays in JSON as hex.
pub mod hex_array {
    pub fn serialize<S: serde::Serializer, const N: usize>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex_string(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        let v = super::parse_hex(&s).map_err(serde::de::Error::custom)?;
        <[u8; N]>::try_from(v.as_slice())
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes")))
    }
}

/// Declares a struct whose encoding is its fields in order.
///
/// A field of type `Vec<T>` must name the [`Limits`] field that bounds its
/// element count: `recipients: Vec<ClientId> [max_recipients]`. A `[u8; N]`
/// field is written `[u8; N] as hex`.
///
/// A field may name a rule its decoded value must also meet (one of
/// [`rules`]): `version: u16 where rules::version`. A rule reports its
/// error at an offset relative to the field's start (0: the field itself).
macro_rules! wire_struct {
    (
        $(#[$m:meta])*
        pub struct $name:ident {
            $( $(#[$fm:meta])* pub $f:ident : $t:ty $([$lim:ident])? $(where $rule:path)? ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            $( $(#[$fm])* pub $f: $t, )*
        }

        impl $crate::codec::Wire for $name {
            const NAME: &'static str = stringify!($name);
            fn decode(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::error::DecodeError> {
                Ok($name {
                    $( $f: r.field(stringify!($f), |r| {
                        #[allow(unused_variables)]
                        let at = r.offset();
                        let value: $t = $crate::codec::wire_struct!(@decode r, $t $(, $lim)?)?;
                        $( $rule(&value).map_err(|e| e.shifted(at))?; )?
                        Ok(value)
                    })?, )*
                })
            }
            fn encode(&self, w: &mut Vec<u8>) -> Result<(), $crate::error::EncodeError> {
                $( $crate::codec::wire_struct!(@encode w, &self.$f $(, $lim)?); )*
                Ok(())
            }
            fn encoded_len(&self) -> usize {
                0 $( + $crate::codec::wire_struct!(@len &self.$f $(, $lim)?) )*
            }
        }
    };
    (@decode $r:ident, $t:ty) => { <$t as $crate::codec::Wire>::decode($r) };
    (@decode $r:ident, $t:ty, $lim:ident) => { $r.vec($r.limits().$lim) };
    (@encode $w:ident, $v:expr) => { $crate::codec::Wire::encode($v, $w)? };
    (@encode $w:ident, $v:expr, $lim:ident) => { $crate::codec::encode_vec($v, $w)? };
    (@len $v:expr) => { $crate::codec::Wire::encoded_len($v) };
    (@len $v:expr, $lim:ident) => { $crate::codec::vec_encoded_len($v) };
}
pub(crate) use wire_struct;

/// Rules a decoded field must meet beyond its syntax (`docs/protocol.md`
/// 1.4), named by `wire_struct!` fields with `where`.
pub mod rules {
    use crate::codec::{Bytes, Wire as _};
    use crate::error::{DecodeError, DecodeErrorKind};
    use crate::mls::{PublicMessage, content_type_of};
    use crate::queueing::QueueingServicePayload;
    use openmls::prelude::ContentType;

    /// A failed rule about the field as a whole.
    fn here(kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(0, kind)
    }

    /// `DSProtocolVersion` of a top-level body: read before anything else,
    /// and another version is `unsupported_version` whatever follows.
    pub fn version(v: &u16) -> Result<(), DecodeError> {
        if crate::ds::SUPPORTED_VERSIONS.contains(v) {
            Ok(())
        } else {
            Err(here(DecodeErrorKind::UnsupportedVersion(*v)))
        }
    }

    /// A vector that must hold at least one element.
    pub fn non_empty<T>(v: &[T]) -> Result<(), DecodeError> {
        if v.is_empty() {
            Err(here(DecodeErrorKind::Empty))
        } else {
            Ok(())
        }
    }

    /// `QueueingServiceRequest`: a `deliver_message`, and every message of
    /// a `deliver_messages`, names at least one recipient. (The rule is on
    /// the request, the body a receiver decodes: a `DeliverMessage` on its
    /// own, such as the per-message template a hub stores, may list none.)
    pub fn deliver_recipients(p: &QueueingServicePayload) -> Result<(), DecodeError> {
        use crate::queueing::DeliverMessage;
        /// Where `d`'s recipients start, from the start of `d`.
        fn recipients_at(d: &DeliverMessage) -> usize {
            d.group_id.encoded_len() + 8
        }
        let empty = |at: usize| DecodeError::new(at, DecodeErrorKind::Empty).within("recipients");
        match p {
            QueueingServicePayload::DeliverMessage(d) if d.recipients.is_empty() => {
                // After the tag.
                Err(empty(1 + recipients_at(d)).within("deliver_message"))
            }
            QueueingServicePayload::DeliverMessages(batch) => {
                // After the tag and the length of `messages`.
                let content: usize = batch.messages.iter().map(|m| m.encoded_len()).sum();
                let mut at = 1 + crate::codec::vec_len_len(content);
                for (index, m) in batch.messages.iter().enumerate() {
                    if m.deliver_message.recipients.is_empty() {
                        let at =
                            at + m.message_id.encoded_len() + recipients_at(&m.deliver_message);
                        return Err(empty(at)
                            .within("deliver_message")
                            .within_index(index)
                            .within("messages")
                            .within("deliver_messages"));
                    }
                    at += m.encoded_len();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn content(
        msg: &PublicMessage,
        want: ContentType,
        name: &'static str,
    ) -> Result<(), DecodeError> {
        match content_type_of(msg.parsed()) {
            Some(ct) if ct == want => Ok(()),
            other => Err(here(DecodeErrorKind::Invalid {
                what: "MLSMessage(public)",
                reason: format!(
                    "content_type is {}, this field carries a {name}",
                    other.map_or("none", crate::mls::content_type_name)
                ),
            })),
        }
    }

    /// `MLSGroupUpdate.commit`: a PublicMessage whose content is a commit.
    pub fn commit(msg: &PublicMessage) -> Result<(), DecodeError> {
        content(msg, ContentType::Commit, "commit")
    }

    /// `SelfRemoveClientRequest.proposal`: a PublicMessage whose content is
    /// a proposal.
    pub fn proposal(msg: &PublicMessage) -> Result<(), DecodeError> {
        content(msg, ContentType::Proposal, "proposal")
    }

    /// Length of an Ed25519 signature, the only `ProviderKeyAlgorithm`.
    pub const PROVIDER_SIGNATURE_LEN: usize = 64;

    /// `ProviderSignature.signature`: the length of a signature of some
    /// `ProviderKeyAlgorithm` (profile 1: Ed25519, 64 bytes).
    pub fn provider_signature(sig: &Bytes) -> Result<(), DecodeError> {
        if sig.0.len() == PROVIDER_SIGNATURE_LEN {
            Ok(())
        } else {
            Err(here(DecodeErrorKind::Invalid {
                what: "signature",
                reason: format!(
                    "{} bytes; a signature of every ProviderKeyAlgorithm (ed25519) is {PROVIDER_SIGNATURE_LEN}",
                    sig.0.len()
                ),
            }))
        }
    }

    /// Bound of `ProviderSignatureTBS.method`, in bytes.
    pub const MAX_HTTP_METHOD: usize = 16;
    /// Bound of `ProviderSignatureTBS.path`, in bytes.
    pub const MAX_HTTP_PATH: usize = 255;

    /// `ProviderSignatureTBS.method`: at most 16 bytes.
    pub fn http_method(method: &Bytes) -> Result<(), DecodeError> {
        at_most(method, MAX_HTTP_METHOD)
    }

    /// `ProviderSignatureTBS.path`: at most 255 bytes.
    pub fn http_path(path: &Bytes) -> Result<(), DecodeError> {
        at_most(path, MAX_HTTP_PATH)
    }

    fn at_most(b: &Bytes, max: usize) -> Result<(), DecodeError> {
        if b.0.len() <= max {
            Ok(())
        } else {
            Err(here(DecodeErrorKind::TooLong {
                len: b.0.len(),
                max,
            }))
        }
    }
}

/// Declares a `select`-style enum: a `uint8` (or wider) tag, then the arm.
///
/// Each variant is unit (`struct {}` on the wire) or carries one value, and
/// has its explicit wire value and its name in `docs/protocol.md`.
macro_rules! wire_enum {
    (
        $(#[$m:meta])*
        pub enum $name:ident : $tag:ty as $tagname:literal {
            $( $(#[$vm:meta])* $v:ident $( ( $inner:ty ) )? = $val:literal as $vname:literal ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vm])* $v $( ( $inner ) )?, )*
        }

        impl $name {
            /// The wire value of this variant's tag.
            pub fn tag(&self) -> $tag {
                match self { $( $crate::codec::wire_enum!(@pat $name, $v $(, $inner)?) => $val, )* }
            }
            /// The variant's name as `docs/protocol.md` spells it.
            pub fn name(&self) -> &'static str {
                match self { $( $crate::codec::wire_enum!(@pat $name, $v $(, $inner)?) => $vname, )* }
            }
        }

        impl $crate::codec::Wire for $name {
            const NAME: &'static str = stringify!($name);
            fn decode(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::error::DecodeError> {
                let at = r.offset();
                let tag = r.field($tagname, |r| <$tag as $crate::codec::Wire>::decode(r))?;
                match tag {
                    $( $val => $crate::codec::wire_enum!(@decode r, $name, $v, $vname $(, $inner)?), )*
                    other => Err($crate::error::DecodeError::new(
                        at,
                        $crate::error::DecodeErrorKind::UnknownValue(u64::from(other)),
                    ).within($tagname)),
                }
            }
            fn encode(&self, w: &mut Vec<u8>) -> Result<(), $crate::error::EncodeError> {
                $crate::codec::Wire::encode(&self.tag(), w)?;
                match self {
                    $( $crate::codec::wire_enum!(@bind $name, $v, x $(, $inner)?) => {
                        $crate::codec::wire_enum!(@encode w, x $(, $inner)?);
                    } )*
                }
                Ok(())
            }
            fn encoded_len(&self) -> usize {
                std::mem::size_of::<$tag>() + match self {
                    $( $crate::codec::wire_enum!(@bind $name, $v, x $(, $inner)?) =>
                        $crate::codec::wire_enum!(@len x $(, $inner)?), )*
                }
            }
        }
    };
    (@pat $name:ident, $v:ident) => { $name::$v };
    (@pat $name:ident, $v:ident, $inner:ty) => { $name::$v(_) };
    (@bind $name:ident, $v:ident, $x:ident) => { $name::$v };
    (@bind $name:ident, $v:ident, $x:ident, $inner:ty) => { $name::$v($x) };
    (@decode $r:ident, $name:ident, $v:ident, $vname:literal) => { Ok($name::$v) };
    (@decode $r:ident, $name:ident, $v:ident, $vname:literal, $inner:ty) => {
        $r.field($vname, |r| <$inner as $crate::codec::Wire>::decode(r)).map($name::$v)
    };
    (@encode $w:ident, $x:ident) => {};
    (@encode $w:ident, $x:ident, $inner:ty) => { $crate::codec::Wire::encode($x, $w)? };
    (@len $x:ident) => { 0 };
    (@len $x:ident, $inner:ty) => { $crate::codec::Wire::encoded_len($x) };
}
pub(crate) use wire_enum;
