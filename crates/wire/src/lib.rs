//! `mimid-wire`: every message of MIMI transport profile 1 as a Rust type
//! with a strict TLS encoding (`docs/protocol.md`).
//!
//! No IO, no async, no cryptography beyond hashing a key id. MLS structs are
//! decoded by OpenMLS and carried as their exact bytes.

pub mod client_api;
mod codec;
pub mod ds;
pub mod dserror;
mod error;
pub mod group_ext;
pub mod ident;
pub mod key_packages;
pub mod keys;
mod limits;
pub mod mls;
pub mod provider_sig;
pub mod queueing;
mod registry;

pub use codec::{Bytes, Reader, ShortBytes, Wire, hex_string, parse_hex, rules};
pub use ds::*;
pub use dserror::{DSError, ErrorCode, ErrorDetail};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use group_ext::*;
pub use ident::*;
pub use key_packages::*;
pub use keys::*;
pub use limits::{DEFAULT_BODY_LIMIT, DEFAULT_GROUP_INFO_EXTENSIONS, Limits, MAX_BATCH};
pub use mls::{
    DeliverableMessage, GroupInfoExtensions, GroupInfoMessage, KeyPackage, LeafNode, Mls, MlsKind,
    PrivateMessage, ProtocolMessage, PublicMessage, RatchetTree, WelcomeMessage, content_type_name,
    content_type_of,
};
pub use provider_sig::*;
pub use queueing::*;
pub use registry::{Endpoint, TYPES, TypeEntry, find_type};
