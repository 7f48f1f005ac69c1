//! The `MIMI-Provider-Signature` header (`docs/protocol.md` section 4):
//! building it (sender side) and the bytes it covers (both sides).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mimid_wire::{
    Bytes, EncodeError, Limits, PROVIDER_SIGNATURE_LABEL, ProviderDomain, ProviderSignContent,
    ProviderSignature, ProviderSignatureTBS, Wire,
};
use sha2::{Digest, Sha256};

use crate::keys::ProviderKey;

pub use mimid_wire::PROVIDER_SIGNATURE_HEADER;

/// Header naming the sending provider in mutual-TLS mode when the request
/// carries no provider signature.
pub const SENDER_HEADER: &str = "mimi-sender";

/// What one request's signature covers, apart from the keys.
#[derive(Clone, Debug)]
pub struct SignedRequest<'a> {
    pub sender: &'a ProviderDomain,
    pub recipient: &'a ProviderDomain,
    /// "POST" or "GET".
    pub method: &'a str,
    /// The path, without a query.
    pub path: &'a str,
    pub body: &'a [u8],
    pub timestamp: u64,
    pub nonce: [u8; 16],
}

impl SignedRequest<'_> {
    /// `ProviderSignatureTBS` for this request.
    pub fn tbs(&self) -> ProviderSignatureTBS {
        ProviderSignatureTBS {
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            method: Bytes(self.method.as_bytes().to_vec()),
            path: Bytes(self.path.as_bytes().to_vec()),
            timestamp: self.timestamp,
            nonce: self.nonce,
            body_sha256: Sha256::digest(self.body).into(),
        }
    }

    /// The signed bytes: the TLS serialization of `ProviderSignContent`.
    pub fn content(&self) -> Result<Vec<u8>, EncodeError> {
        ProviderSignContent {
            label: Bytes(PROVIDER_SIGNATURE_LABEL.to_vec()),
            content: Bytes(self.tbs().to_bytes()?),
        }
        .to_bytes()
    }

    /// The `ProviderSignature` made with `key`.
    pub fn sign(&self, key: &ProviderKey) -> Result<ProviderSignature, EncodeError> {
        Ok(ProviderSignature {
            sender: self.sender.clone(),
            key_id: key.key_id(),
            timestamp: self.timestamp,
            nonce: self.nonce,
            signature: Bytes(key.sign(&self.content()?).to_vec()),
        })
    }
}

/// The header value for a signature: base64url without padding.
pub fn encode_header(signature: &ProviderSignature) -> Result<String, EncodeError> {
    Ok(URL_SAFE_NO_PAD.encode(signature.to_bytes()?))
}

/// Parses a header value; any failure is the peer's malformed header.
pub fn decode_header(value: &[u8], limits: &Limits) -> Result<ProviderSignature, String> {
    let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|e| {
        format!("{PROVIDER_SIGNATURE_HEADER} is not base64url without padding: {e}")
    })?;
    ProviderSignature::decode_exact(&bytes, limits).map_err(|e| e.to_string())
}

/// 16 random bytes for a nonce.
pub fn random_nonce() -> Result<[u8; 16], getrandom::Error> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)?;
    Ok(nonce)
}
