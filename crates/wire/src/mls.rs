//! RFC 9420 structs carried inside MIMI messages.
//!
//! They are decoded by OpenMLS, never by hand, and kept as the exact bytes
//! received (so re-encoding is byte-identical and signatures over them stay
//! valid) next to the OpenMLS value (so the hub does not parse twice).

use std::fmt;
use std::marker::PhantomData;

use openmls::messages::group_info::GroupInfo as OpenMlsGroupInfo;
use openmls::prelude::{
    ContentType, Extensions, KeyPackageIn, MlsMessageBodyIn, MlsMessageIn, RatchetTreeIn,
    UpdateProposalIn, WireFormat,
};
use tls_codec::{DeserializeBytes, Size};

use crate::codec::{Reader, Wire, hex_string, parse_hex};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};

/// Which RFC 9420 struct a field holds, and which forms of it are allowed.
pub trait MlsKind: 'static {
    /// The name `docs/protocol.md` uses for the field's type.
    const WHAT: &'static str;
    /// The OpenMLS type that decodes it.
    type Raw: DeserializeBytes;
    /// What is kept of it.
    type Parsed: Clone + fmt::Debug + Send + Sync;
    /// Checks the decoded value against the field's constraint and keeps
    /// what the hub reads.
    fn convert(raw: Self::Raw) -> Result<Self::Parsed, String>;
    /// Bounds of this kind beyond the bound of every vector, checked on
    /// the decoded value of `len` bytes.
    fn within_limits(
        _parsed: &Self::Parsed,
        _len: usize,
        _limits: &crate::Limits,
    ) -> Result<(), DecodeErrorKind> {
        Ok(())
    }
}

/// The bound of a GroupInfo's `extensions` (`Limits::max_group_info_extensions`),
/// whether they arrive alone (`PartialGroupInfo`) or in a GroupInfo
/// (`CreateGroupRequest`): the hub keeps them in the group's state.
fn group_info_extensions_within(len: usize, limits: &crate::Limits) -> Result<(), DecodeErrorKind> {
    let max = limits.max_group_info_extensions;
    if len > max {
        return Err(DecodeErrorKind::TooLong { len, max });
    }
    Ok(())
}

/// An RFC 9420 struct: its exact bytes and the OpenMLS value.
pub struct Mls<K: MlsKind> {
    bytes: Vec<u8>,
    // Boxed: OpenMLS values are large, and enums holding several would
    // otherwise carry the largest inline.
    parsed: Box<K::Parsed>,
    kind: PhantomData<K>,
}

impl<K: MlsKind> Mls<K> {
    /// Parses a complete encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_exact(bytes, &crate::Limits::default())
    }

    /// The exact bytes as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The OpenMLS value (for `MLSMessage` kinds: the message body, whose
    /// variant the kind guarantees).
    pub fn parsed(&self) -> &K::Parsed {
        &self.parsed
    }

    pub fn into_parts(self) -> (Vec<u8>, K::Parsed) {
        (self.bytes, *self.parsed)
    }
}

impl<K: MlsKind> Clone for Mls<K> {
    fn clone(&self) -> Self {
        Mls {
            bytes: self.bytes.clone(),
            parsed: self.parsed.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: MlsKind> PartialEq for Mls<K> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<K: MlsKind> Eq for Mls<K> {}

impl<K: MlsKind> fmt::Debug for Mls<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({} bytes)", K::WHAT, self.bytes.len())
    }
}

impl<K: MlsKind> Wire for Mls<K> {
    const NAME: &'static str = K::WHAT;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.offset();
        let (raw, bytes) = r.mls::<K::Raw>(K::WHAT)?;
        let parsed = K::convert(raw).map_err(|reason| DecodeError::invalid(at, K::WHAT, reason))?;
        K::within_limits(&parsed, bytes.len(), r.limits()).map_err(|k| DecodeError::new(at, k))?;
        Ok(Mls {
            bytes: bytes.to_vec(),
            parsed: Box::new(parsed),
            kind: PhantomData,
        })
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        w.extend_from_slice(&self.bytes);
        Ok(())
    }
    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }
}

impl<K: MlsKind> serde::Serialize for Mls<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex_string(&self.bytes))
    }
}

impl<'de, K: MlsKind> serde::Deserialize<'de> for Mls<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        let bytes = parse_hex(&s).map_err(serde::de::Error::custom)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Keeps the body of an `MLSMessage` whose `wire_format` is allowed: its
/// fields can then be read by reference (OpenMLS offers no borrowing
/// accessor on `MlsMessageIn`).
fn body_if(msg: MlsMessageIn, allowed: &[WireFormat]) -> Result<MlsMessageBodyIn, String> {
    let wf = msg.wire_format();
    if allowed.contains(&wf) {
        let body = msg.extract();
        check_framing(&body)?;
        Ok(body)
    } else {
        Err(format!(
            "wire_format {wf:?} not allowed here (allowed: {allowed:?})"
        ))
    }
}

/// What decoding checks in the framing of every `MLSMessage` field
/// (`docs/protocol.md` 1.4): the MLS `group_id` of a PublicMessage,
/// PrivateMessage or GroupInfo is a MIMI `GroupId`; a PublicMessage carries
/// a proposal or a commit (RFC 9420 sends application data only in a
/// PrivateMessage) and a PrivateMessage application data (profile 1 sends
/// handshake messages as PublicMessages).
fn check_framing(body: &MlsMessageBodyIn) -> Result<(), String> {
    let group_id = match body {
        MlsMessageBodyIn::PublicMessage(m) => {
            if m.content_type() == ContentType::Application {
                return Err("a PublicMessage with content_type application \
                     (application messages are PrivateMessages)"
                    .into());
            }
            m.group_id()
        }
        MlsMessageBodyIn::PrivateMessage(m) => {
            if m.content_type() != ContentType::Application {
                return Err(format!(
                    "a PrivateMessage with content_type {} \
                     (handshake messages are PublicMessages)",
                    content_type_name(m.content_type())
                ));
            }
            m.group_id()
        }
        MlsMessageBodyIn::GroupInfo(gi) => gi.group_id(),
        _ => return Ok(()),
    };
    crate::ident::GroupId::from_mls_bytes(group_id.as_slice())
        .map(|_| ())
        .map_err(|e| format!("its group_id is not a MIMI GroupId ({e})"))
}

/// The `content_type` of a PublicMessage or PrivateMessage (visible in
/// both: RFC 9420 encrypts only a PrivateMessage's content, not its type).
pub fn content_type_of(body: &MlsMessageBodyIn) -> Option<ContentType> {
    match body {
        MlsMessageBodyIn::PublicMessage(m) => Some(m.content_type()),
        MlsMessageBodyIn::PrivateMessage(m) => Some(m.content_type()),
        _ => None,
    }
}

/// The RFC 9420 name of a content type.
pub fn content_type_name(ct: ContentType) -> &'static str {
    match ct {
        ContentType::Application => "application",
        ContentType::Proposal => "proposal",
        ContentType::Commit => "commit",
    }
}

/// The field kinds of `docs/protocol.md` 1.2.
pub mod kind {
    use super::*;

    macro_rules! message_kind {
        ($(#[$m:meta])* $name:ident, $what:literal, [$($wf:ident),+]) => {
            $(#[$m])*
            pub struct $name;
            impl MlsKind for $name {
                const WHAT: &'static str = $what;
                type Raw = MlsMessageIn;
                type Parsed = MlsMessageBodyIn;
                fn convert(raw: MlsMessageIn) -> Result<MlsMessageBodyIn, String> {
                    body_if(raw, &[$(WireFormat::$wf),+])
                }
            }
        };
    }

    message_kind!(
        /// `MLSMessage /* public */`
        Public, "MLSMessage(public)", [PublicMessage]);
    message_kind!(
        /// `MLSMessage /* private */`
        Private, "MLSMessage(private)", [PrivateMessage]);
    message_kind!(
        /// `MLSMessage /* protocol */`
        Protocol, "MLSMessage(protocol)", [PublicMessage, PrivateMessage]);
    message_kind!(
        /// `MLSMessage /* welcome */`
        Welcome, "MLSMessage(welcome)", [Welcome]);
    /// `MLSMessage /* group_info */`
    pub struct GroupInfo;
    impl MlsKind for GroupInfo {
        const WHAT: &'static str = "MLSMessage(group_info)";
        type Raw = MlsMessageIn;
        type Parsed = MlsMessageBodyIn;
        fn convert(raw: MlsMessageIn) -> Result<MlsMessageBodyIn, String> {
            body_if(raw, &[WireFormat::GroupInfo])
        }
        fn within_limits(
            parsed: &MlsMessageBodyIn,
            _len: usize,
            limits: &crate::Limits,
        ) -> Result<(), DecodeErrorKind> {
            match parsed {
                MlsMessageBodyIn::GroupInfo(gi) => {
                    group_info_extensions_within(gi.extensions().tls_serialized_len(), limits)
                }
                _ => Ok(()),
            }
        }
    }
    message_kind!(
        /// `MLSMessage /* deliverable */`
        Deliverable, "MLSMessage(deliverable)", [PublicMessage, PrivateMessage, Welcome]);

    /// A bare RFC 9420 `KeyPackage`.
    pub struct KeyPackage;
    impl MlsKind for KeyPackage {
        const WHAT: &'static str = "KeyPackage";
        type Raw = KeyPackageIn;
        type Parsed = KeyPackageIn;
        fn convert(raw: KeyPackageIn) -> Result<KeyPackageIn, String> {
            Ok(raw)
        }
    }

    /// A bare RFC 9420 `LeafNode`. OpenMLS exposes its decoder through the
    /// Update proposal, whose encoding is exactly one `LeafNode`.
    pub struct LeafNode;
    impl MlsKind for LeafNode {
        const WHAT: &'static str = "LeafNode";
        type Raw = UpdateProposalIn;
        type Parsed = UpdateProposalIn;
        fn convert(raw: UpdateProposalIn) -> Result<UpdateProposalIn, String> {
            Ok(raw)
        }
    }

    /// `optional<Node> ratchet_tree<V>`.
    pub struct RatchetTree;
    impl MlsKind for RatchetTree {
        const WHAT: &'static str = "RatchetTree";
        type Raw = RatchetTreeIn;
        type Parsed = RatchetTreeIn;
        fn convert(raw: RatchetTreeIn) -> Result<RatchetTreeIn, String> {
            Ok(raw)
        }
    }

    /// `Extension extensions<V>` of a GroupInfo.
    pub struct GroupInfoExtensions;
    impl MlsKind for GroupInfoExtensions {
        const WHAT: &'static str = "Extension<V>";
        type Raw = Extensions<OpenMlsGroupInfo>;
        type Parsed = Extensions<OpenMlsGroupInfo>;
        fn convert(
            raw: Extensions<OpenMlsGroupInfo>,
        ) -> Result<Extensions<OpenMlsGroupInfo>, String> {
            Ok(raw)
        }
        fn within_limits(
            _parsed: &Self::Parsed,
            len: usize,
            limits: &crate::Limits,
        ) -> Result<(), DecodeErrorKind> {
            group_info_extensions_within(len, limits)
        }
    }
}

pub type PublicMessage = Mls<kind::Public>;
pub type PrivateMessage = Mls<kind::Private>;
pub type ProtocolMessage = Mls<kind::Protocol>;
pub type WelcomeMessage = Mls<kind::Welcome>;
pub type GroupInfoMessage = Mls<kind::GroupInfo>;
pub type DeliverableMessage = Mls<kind::Deliverable>;
pub type KeyPackage = Mls<kind::KeyPackage>;
pub type LeafNode = Mls<kind::LeafNode>;
pub type RatchetTree = Mls<kind::RatchetTree>;
pub type GroupInfoExtensions = Mls<kind::GroupInfoExtensions>;
