//! KeyPackage retrieval: `/connection_key_packages` and
//! `/group_key_packages` (`docs/protocol.md` section 9).

use crate::codec::{rules, wire_enum, wire_struct};
use crate::dserror::DSError;
use crate::ident::{ClientId, UserId};
use crate::mls::KeyPackage;

/// KeyPackage extension type marking a connection KeyPackage.
pub const CONNECTION_KEY_PACKAGE_EXTENSION: u16 = 0xF0A1;

/// The `last_resort` KeyPackage extension (draft-ietf-mls-extensions).
pub const LAST_RESORT_EXTENSION: u16 = 0x000A;

wire_struct! {
    pub struct ConnectionKeyPackageRequest {
        pub version: u16 where rules::version,
        pub requester: UserId,
        pub target: UserId,
    }
}

wire_struct! {
    pub struct GroupKeyPackageRequest {
        pub version: u16 where rules::version,
        pub requester: UserId,
        pub target: UserId,
        pub clients: Vec<ClientId> [max_clients],
    }
}

wire_struct! {
    pub struct KeyPackagesOk {
        pub target: UserId,
        pub key_packages: Vec<KeyPackage> [max_key_packages] where rules::non_empty,
    }
}

wire_enum! {
    pub enum KeyPackagesResult: u8 as "response_type" {
        Ok(KeyPackagesOk) = 0 as "ok",
        Error(DSError) = 1 as "error",
    }
}

wire_struct! {
    pub struct ConnectionKeyPackageResponse {
        pub version: u16 where rules::version,
        pub result: KeyPackagesResult,
    }
}

wire_struct! {
    pub struct GroupKeyPackageResponse {
        pub version: u16 where rules::version,
        pub result: KeyPackagesResult,
    }
}
