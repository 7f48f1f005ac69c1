//! The provider signature header (`docs/protocol.md` section 4).

use crate::codec::{Bytes, hex_array, rules, wire_struct};
use crate::ident::ProviderDomain;

/// HTTP header carrying a [`ProviderSignature`].
pub const PROVIDER_SIGNATURE_HEADER: &str = "mimi-provider-signature";

/// `ProviderSignContent.label`.
pub const PROVIDER_SIGNATURE_LABEL: &[u8] = b"MIMI transport 1 ProviderSignature";

wire_struct! {
    /// The header value (base64url without padding of this encoding).
    pub struct ProviderSignature {
        pub sender: ProviderDomain,
        #[serde(with = "hex_array")]
        pub key_id: [u8; 8],
        pub timestamp: u64,
        #[serde(with = "hex_array")]
        pub nonce: [u8; 16],
        pub signature: Bytes where rules::provider_signature,
    }
}

wire_struct! {
    /// What the provider signature covers.
    pub struct ProviderSignatureTBS {
        pub sender: ProviderDomain,
        pub recipient: ProviderDomain,
        pub method: Bytes where rules::http_method,
        pub path: Bytes where rules::http_path,
        pub timestamp: u64,
        #[serde(with = "hex_array")]
        pub nonce: [u8; 16],
        #[serde(with = "hex_array")]
        pub body_sha256: [u8; 32],
    }
}

wire_struct! {
    /// The signed bytes: a label and the encoded TBS.
    pub struct ProviderSignContent {
        pub label: Bytes,
        pub content: Bytes,
    }
}
