//! Ed25519 client signatures, alone or in batches (`docs/protocol.md` 6.1).
//!
//! They are checked with the cofactored equation of RFC 8032 §5.1.7, the
//! one batch verification checks, whether a signature is checked alone or
//! in a batch: so whether a request is accepted never depends on which
//! other requests arrived with it. Nothing here knows a group: the member
//! lookup is `auth.rs`.

use mimid_wire::{CLIENT_SIGNATURE_LABEL, DSAuthData, DSRequest};
use openmls::prelude::{SignContent, tls_codec::Serialize as _};

use crate::error::HubError;

/// The bytes a client signature is over: `SignContent` with the MIMI label
/// and the encoded `ClientSignatureTBS`.
pub(crate) fn signed_content(request: &DSRequest, sender_index: u32) -> Result<Vec<u8>, HubError> {
    let tbs = request
        .client_signature_tbs(sender_index)
        .map_err(crate::error::internal)?;
    SignContent::new(CLIENT_SIGNATURE_LABEL, tbs.into())
        .tls_serialize_detached()
        .map_err(crate::error::internal)
}

/// A member's decoded Ed25519 signature key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignerKey(ed25519_dalek::VerifyingKey);

impl SignerKey {
    /// Decodes a key; a key of small order (which would verify forged
    /// signatures under the cofactored equation) is refused.
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, HubError> {
        Self::parse(bytes).ok_or_else(|| {
            HubError::ClientSignature("the signer's key is not an Ed25519 key".into())
        })
    }

    /// [`SignerKey::from_slice`] for keys other than a member's (a
    /// provider's): `None` for what is no usable Ed25519 key.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
        (!key.is_weak()).then_some(SignerKey(key))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Checks one signature, with the same equation as a batch.
    pub(crate) fn verify(&self, content: &[u8], signature: &[u8]) -> Result<(), HubError> {
        let signature = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| HubError::ClientSignature("malformed signature".into()))?;
        ed25519_dalek::verify_batch(&[content], &[signature], &[self.0])
            .map_err(|_| HubError::ClientSignature("signature does not verify".into()))
    }
}

/// One Ed25519 signature over `content`, to check with the cofactored
/// equation, alone or with others ([`verify_each`]).
pub struct Ed25519Check {
    key: ed25519_dalek::VerifyingKey,
    signature: ed25519_dalek::Signature,
    content: Vec<u8>,
}

impl Ed25519Check {
    /// `None` if `signature` is not 64 bytes.
    pub fn new(key: &SignerKey, signature: &[u8], content: Vec<u8>) -> Option<Self> {
        Some(Ed25519Check {
            key: key.0,
            signature: ed25519_dalek::Signature::from_slice(signature).ok()?,
            content,
        })
    }

    /// Whether it verifies, checked alone.
    pub fn verify(&self) -> bool {
        ed25519_dalek::verify_batch(&[&self.content], &[self.signature], &[self.key]).is_ok()
    }
}

/// Whether each signature verifies: checked in one batch, about half the
/// cost of checking them one by one; if the batch fails, each is checked
/// alone, so one bad signature costs its sender a refusal and the others
/// nothing but time.
pub fn verify_each(checks: &[Ed25519Check]) -> Vec<bool> {
    let contents: Vec<&[u8]> = checks.iter().map(|c| c.content.as_slice()).collect();
    let signatures: Vec<_> = checks.iter().map(|c| c.signature).collect();
    let keys: Vec<_> = checks.iter().map(|c| c.key).collect();
    let all_valid = ed25519_dalek::verify_batch(&contents, &signatures, &keys).is_ok();
    checks.iter().map(|c| all_valid || c.verify()).collect()
}

/// A client signature found valid ahead of the step, in a batch with other
/// requests' signatures ([`verify_batch`]). The step accepts it in place of
/// its own check only if the signer's leaf still has the key it was
/// checked with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    index: u32,
    key: [u8; 32],
    signature: [u8; 64],
    /// What was signed: the step compares it with its request's, so a
    /// result cannot vouch for another request with the same signature.
    content: Vec<u8>,
}

impl Verified {
    /// Whether this result vouches for `request`'s signature by leaf
    /// `index` with `key`: all four must match.
    pub(crate) fn covers(&self, index: u32, key: &SignerKey, request: &DSRequest) -> bool {
        let DSAuthData::ClientSignature(sig) = &request.authentication_data else {
            return false;
        };
        self.index == index
            && &self.key == key.as_bytes()
            && self.signature[..] == sig.signature.0[..]
            && signed_content(request, index).is_ok_and(|content| self.content == content)
    }
}

/// Largest signed content worth a batch: at 8 KiB, SHA-512 takes about as
/// long as the scalar multiplications a batch halves.
const BATCH_CONTENT_MAX: usize = 8 * 1024;

/// One request's Ed25519 client signature, ready for [`verify_batch`].
pub struct SignatureCheck {
    index: u32,
    check: Ed25519Check,
}

impl SignatureCheck {
    /// The check of `request`'s client signature against `key`, the
    /// signer's key as last seen (e.g. from [`HubGroup::signer_key`]).
    /// `None` when the request carries no well-formed client signature.
    /// `None` also for a large request (a commit): hashing its body costs
    /// far more than the curve arithmetic a batch saves, so the step checks
    /// it itself rather than wait for a batch.
    pub fn new(request: &DSRequest, key: &SignerKey) -> Option<Self> {
        let DSAuthData::ClientSignature(sig) = &request.authentication_data else {
            return None;
        };
        let content = signed_content(request, sig.sender_index).ok()?;
        if content.len() > BATCH_CONTENT_MAX {
            return None;
        }
        Some(SignatureCheck {
            index: sig.sender_index,
            check: Ed25519Check::new(key, &sig.signature.0, content)?,
        })
    }

    /// The signer's leaf index and the signature to check.
    pub fn into_parts(self) -> (u32, Ed25519Check) {
        (self.index, self.check)
    }

    /// What a check of leaf `index`'s signature that verified vouches for.
    pub fn verified(index: u32, check: Ed25519Check) -> Verified {
        Verified {
            index,
            key: check.key.to_bytes(),
            signature: check.signature.to_bytes(),
            content: check.content,
        }
    }
}

/// Checks many requests' signatures at once: about half the cost of
/// checking them one by one. If the batch fails, each is checked alone, so
/// one bad signature costs its sender a refusal and the others nothing but
/// time. `None` for a signature that does not verify (the step will check
/// it again and refuse it with the reason).
pub fn verify_batch(checks: Vec<SignatureCheck>) -> Vec<Option<Verified>> {
    let (indexes, checks): (Vec<u32>, Vec<Ed25519Check>) =
        checks.into_iter().map(SignatureCheck::into_parts).unzip();
    let valid = verify_each(&checks);
    indexes
        .into_iter()
        .zip(checks)
        .zip(valid)
        .map(|((index, check), valid)| valid.then(|| SignatureCheck::verified(index, check)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::SignerKey;

    #[test]
    fn keys_of_small_order_are_refused() {
        // The identity point: under the cofactored equation it would
        // "verify" signatures nobody made.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(SignerKey::from_slice(&identity).is_err());
        assert!(SignerKey::from_slice(&[0u8; 31]).is_err());
        let basepoint = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        assert!(SignerKey::from_slice(basepoint.as_bytes()).is_ok());
    }

    #[test]
    fn a_signature_with_s_not_reduced_is_refused() {
        use ed25519_dalek::Signer as _;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let key = SignerKey::from_slice(signing.verifying_key().as_bytes()).unwrap();
        let signature = signing.sign(b"content").to_bytes();
        assert!(key.verify(b"content", &signature).is_ok());
        // S + L (the group order) satisfies the same equation; RFC 8032
        // requires S < L.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut high = signature;
        let mut carry = 0u16;
        for (byte, l) in high[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert!(key.verify(b"content", &high).is_err());
        assert!(key.verify(b"other content", &signature).is_err());
    }
}
