//! Provider keys: `/verification_key` (`docs/protocol.md` section 8).

use sha2::{Digest, Sha256};

use crate::codec::{Bytes, Reader, Wire, hex_array, rules, wire_enum, wire_struct};
use crate::dserror::DSError;
use crate::error::{DecodeError, EncodeError};
use crate::ident::ProviderDomain;

/// `ProviderKeyAlgorithm` (uint16, TLS SignatureScheme values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKeyAlgorithm {
    Ed25519,
}

impl ProviderKeyAlgorithm {
    pub const fn to_u16(self) -> u16 {
        match self {
            ProviderKeyAlgorithm::Ed25519 => 0x0807,
        }
    }
    /// Public key length the algorithm requires.
    pub const fn public_key_len(self) -> usize {
        match self {
            ProviderKeyAlgorithm::Ed25519 => 32,
        }
    }
}

impl Wire for ProviderKeyAlgorithm {
    const NAME: &'static str = "ProviderKeyAlgorithm";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.offset();
        match u16::decode(r)? {
            0x0807 => Ok(ProviderKeyAlgorithm::Ed25519),
            other => Err(DecodeError::new(
                at,
                crate::DecodeErrorKind::UnknownValue(other.into()),
            )),
        }
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.to_u16().encode(w)
    }
    fn encoded_len(&self) -> usize {
        2
    }
}

wire_struct! {
    /// What a key id is computed over.
    pub struct VerificationKeyId {
        pub algorithm: ProviderKeyAlgorithm,
        pub public_key: Bytes,
    }
}

impl VerificationKeyId {
    /// First 8 bytes of SHA-256 of the encoding.
    pub fn key_id(&self) -> Result<[u8; 8], EncodeError> {
        let digest = Sha256::digest(self.to_bytes()?);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Ok(id)
    }
}

/// One provider key with its validity.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerificationKey {
    #[serde(with = "hex_array")]
    pub key_id: [u8; 8],
    pub algorithm: ProviderKeyAlgorithm,
    pub public_key: Bytes,
    pub not_before: u64,
    pub not_after: u64,
}

impl VerificationKey {
    /// Builds a key with its derived id.
    pub fn new(
        algorithm: ProviderKeyAlgorithm,
        public_key: Vec<u8>,
        not_before: u64,
        not_after: u64,
    ) -> Result<Self, EncodeError> {
        let public_key = Bytes(public_key);
        let key_id = VerificationKeyId {
            algorithm,
            public_key: public_key.clone(),
        }
        .key_id()?;
        Ok(VerificationKey {
            key_id,
            algorithm,
            public_key,
            not_before,
            not_after,
        })
    }
}

impl Wire for VerificationKey {
    const NAME: &'static str = "VerificationKey";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.offset();
        let key = VerificationKey {
            key_id: r.field("key_id", <[u8; 8]>::decode)?,
            algorithm: r.field("algorithm", ProviderKeyAlgorithm::decode)?,
            public_key: r.field("public_key", Bytes::decode)?,
            not_before: r.field("not_before", u64::decode)?,
            not_after: r.field("not_after", u64::decode)?,
        };
        if key.public_key.0.len() != key.algorithm.public_key_len() {
            return Err(DecodeError::invalid(
                at,
                "VerificationKey",
                "public key has the wrong length",
            ));
        }
        let id = VerificationKeyId {
            algorithm: key.algorithm,
            public_key: key.public_key.clone(),
        }
        .key_id()
        .map_err(|e| DecodeError::invalid(at, "VerificationKey", e.to_string()))?;
        if id != key.key_id {
            return Err(DecodeError::invalid(
                at,
                "VerificationKey",
                "key_id does not match the key",
            ));
        }
        if key.not_before > key.not_after {
            return Err(DecodeError::invalid(
                at,
                "VerificationKey",
                "not_before is after not_after",
            ));
        }
        Ok(key)
    }
    fn encode(&self, w: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.key_id.encode(w)?;
        self.algorithm.encode(w)?;
        self.public_key.encode(w)?;
        self.not_before.encode(w)?;
        self.not_after.encode(w)
    }
    fn encoded_len(&self) -> usize {
        8 + 2 + self.public_key.encoded_len() + 8 + 8
    }
}

wire_struct! {
    pub struct VerificationKeyRequest {
        pub version: u16 where rules::version,
        pub provider: ProviderDomain,
    }
}

wire_struct! {
    pub struct VerificationKeyOk {
        pub provider: ProviderDomain,
        pub keys: Vec<VerificationKey> [max_keys] where rules::non_empty,
    }
}

wire_enum! {
    pub enum VerificationKeyResult: u8 as "response_type" {
        Ok(VerificationKeyOk) = 0 as "ok",
        Error(DSError) = 1 as "error",
    }
}

wire_struct! {
    pub struct VerificationKeyResponse {
        pub version: u16 where rules::version,
        pub result: VerificationKeyResult,
    }
}
