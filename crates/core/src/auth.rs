//! Client signatures on DS requests (`docs/protocol.md` 6.1).
//!
//! Ed25519 client signatures are checked with the cofactored equation of
//! RFC 8032 §5.1.7, the one batch verification checks, whether a signature
//! is checked alone or in a batch: so whether a request is accepted never
//! depends on which other requests arrived with it.

use mimid_wire::{CLIENT_SIGNATURE_LABEL, DSAuthData, DSRequest};
use openmls::prelude::{SignContent, tls_codec::Serialize as _};
use openmls_traits::{crypto::OpenMlsCrypto, types::SignatureScheme};

use crate::error::HubError;
use crate::hub::{Context, Origin};
use crate::state::HubGroup;

/// The `sender_index` of a client-signed request.
pub(crate) fn sender_index(request: &DSRequest) -> Result<u32, HubError> {
    match &request.authentication_data {
        DSAuthData::ClientSignature(sig) => Ok(sig.sender_index),
        DSAuthData::Anonymous => Err(HubError::ClientSignature(
            "this operation needs a client signature".into(),
        )),
    }
}

/// The bytes a client signature is over: `SignContent` with the MIMI label
/// and the encoded `ClientSignatureTBS`.
fn signed_content(request: &DSRequest, sender_index: u32) -> Result<Vec<u8>, HubError> {
    let tbs = request
        .client_signature_tbs(sender_index)
        .map_err(crate::error::internal)?;
    SignContent::new(CLIENT_SIGNATURE_LABEL, tbs.into())
        .tls_serialize_detached()
        .map_err(crate::error::internal)
}

/// Verifies the request's client signature with `key` (SignWithLabel,
/// label "MIMI DS ClientSignature", the group's scheme).
pub(crate) fn verify(
    crypto: &impl OpenMlsCrypto,
    scheme: SignatureScheme,
    request: &DSRequest,
    key: &[u8],
) -> Result<(), HubError> {
    let DSAuthData::ClientSignature(sig) = &request.authentication_data else {
        return Err(HubError::ClientSignature(
            "this operation needs a client signature".into(),
        ));
    };
    let content = signed_content(request, sig.sender_index)?;
    if scheme == SignatureScheme::ED25519 {
        let key = SignerKey::from_slice(key)?;
        return key.verify(&content, &sig.signature.0);
    }
    crypto
        .verify_signature(scheme, &content, key, &sig.signature.0)
        .map_err(|_| HubError::ClientSignature("signature does not verify".into()))
}

/// A member's decoded Ed25519 signature key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignerKey(ed25519_dalek::VerifyingKey);

impl SignerKey {
    /// Decodes a key; a key of small order (which would verify forged
    /// signatures under the cofactored equation) is refused.
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, HubError> {
        let bad = || HubError::ClientSignature("the signer's key is not an Ed25519 key".into());
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        if key.is_weak() {
            return Err(bad());
        }
        Ok(SignerKey(key))
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

/// Largest signed content worth a batch: at 8 KiB, SHA-512 takes about as
/// long as the scalar multiplications a batch halves.
const BATCH_CONTENT_MAX: usize = 8 * 1024;

/// One request's Ed25519 client signature, ready for [`verify_batch`].
pub struct SignatureCheck {
    index: u32,
    key: ed25519_dalek::VerifyingKey,
    signature: ed25519_dalek::Signature,
    content: Vec<u8>,
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
            key: key.0,
            signature: ed25519_dalek::Signature::from_slice(&sig.signature.0).ok()?,
            content,
        })
    }

    fn verified(self) -> Verified {
        Verified {
            index: self.index,
            key: self.key.to_bytes(),
            signature: self.signature.to_bytes(),
            content: self.content,
        }
    }
}

/// Checks many requests' signatures at once: about half the cost of
/// checking them one by one. If the batch fails, each is checked alone, so
/// one bad signature costs its sender a refusal and the others nothing but
/// time. `None` for a signature that does not verify (the step will check
/// it again and refuse it with the reason).
pub fn verify_batch(checks: Vec<SignatureCheck>) -> Vec<Option<Verified>> {
    let contents: Vec<&[u8]> = checks.iter().map(|c| c.content.as_slice()).collect();
    let signatures: Vec<_> = checks.iter().map(|c| c.signature).collect();
    let keys: Vec<_> = checks.iter().map(|c| c.key).collect();
    let all_valid = ed25519_dalek::verify_batch(&contents, &signatures, &keys).is_ok();
    checks
        .into_iter()
        .map(|c| {
            let valid = all_valid
                || ed25519_dalek::verify_batch(&[&c.content], &[c.signature], &[c.key]).is_ok();
            valid.then(|| c.verified())
        })
        .collect()
}

/// The leaf a request claims to be signed by, if it is client-signed.
pub fn claimed_signer(request: &DSRequest) -> Option<u32> {
    sender_index(request).ok()
}

/// Verifies a member's request: the leaf at `sender_index` exists, signed
/// the request, and (over federation) belongs to the sending provider.
pub(crate) fn verify_member(
    crypto: &impl OpenMlsCrypto,
    group: &HubGroup,
    request: &DSRequest,
    ctx: &Context,
) -> Result<u32, HubError> {
    let signature = MemberSignature::look_up(group, request, ctx)?;
    signature.check(crypto, request)?;
    check_origin(group, signature.index, &ctx.origin)?;
    Ok(signature.index)
}

/// A member's client signature, with the signer's key taken from the
/// current tree. It holds nothing of the group, so [`MemberSignature::check`]
/// (which hashes the whole request) can run on another thread while the
/// commit it signs is validated (`commit::run`).
pub(crate) struct MemberSignature {
    pub index: u32,
    key: MemberKey,
}

enum MemberKey {
    /// Already checked, with this key, in a batch ahead of the step.
    Checked,
    Ed25519(SignerKey),
    Other(SignatureScheme, Vec<u8>),
}

impl MemberSignature {
    /// Finds the signer's leaf and key; fails if there is none.
    pub(crate) fn look_up(
        group: &HubGroup,
        request: &DSRequest,
        ctx: &Context,
    ) -> Result<Self, HubError> {
        let index = sender_index(request)?;
        let missing = || HubError::ClientSignature(format!("no member at leaf {index}"));
        let scheme = group.public.ciphersuite().signature_algorithm();
        if scheme != SignatureScheme::ED25519 {
            let key = group.leaf_key(index).ok_or_else(missing)?;
            return Ok(MemberSignature {
                index,
                key: MemberKey::Other(scheme, key),
            });
        }
        // Members sign often: their decoded keys are cached by the group.
        let key = group.signer_key(index).ok_or_else(missing)??;
        let DSAuthData::ClientSignature(sig) = &request.authentication_data else {
            return Err(HubError::ClientSignature(
                "this operation needs a client signature".into(),
            ));
        };
        let checked_before = ctx.verified.as_ref().is_some_and(|v| {
            v.index == index
                && &v.key == key.as_bytes()
                && v.signature[..] == sig.signature.0[..]
                && signed_content(request, index).is_ok_and(|content| v.content == content)
        });
        Ok(MemberSignature {
            index,
            key: if checked_before {
                MemberKey::Checked
            } else {
                MemberKey::Ed25519(key)
            },
        })
    }

    /// Checks the signature over `request`.
    pub(crate) fn check(
        &self,
        crypto: &impl OpenMlsCrypto,
        request: &DSRequest,
    ) -> Result<(), HubError> {
        match &self.key {
            MemberKey::Checked => Ok(()),
            MemberKey::Ed25519(key) => {
                let DSAuthData::ClientSignature(sig) = &request.authentication_data else {
                    return Err(HubError::ClientSignature(
                        "this operation needs a client signature".into(),
                    ));
                };
                key.verify(&signed_content(request, self.index)?, &sig.signature.0)
            }
            MemberKey::Other(scheme, key) => verify(crypto, *scheme, request, key),
        }
    }
}

/// Over federation, a provider may only act for its own clients.
pub(crate) fn check_origin(group: &HubGroup, index: u32, origin: &Origin) -> Result<(), HubError> {
    if let Origin::Provider(provider) = origin {
        let member = group
            .member(index)
            .ok_or_else(|| HubError::NotAMember(format!("no member at leaf {index}")))?;
        if &member.client.domain() != provider {
            return Err(HubError::NotAllowed(format!(
                "{provider} may not act for {}",
                member.client
            )));
        }
    }
    Ok(())
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
