//! Who signed a DS request (`docs/protocol.md` 6.1): the signer's leaf and
//! key in the group, and whether its provider may act for it. The
//! signature arithmetic is `signer.rs`.

use mimid_wire::{ClientId, DSAuthData, DSRequest, ProviderDomain, PublicMessage};
use openmls::prelude::{MlsMessageBodyIn, Sender};
use openmls_traits::{crypto::OpenMlsCrypto, types::SignatureScheme};

use crate::error::HubError;
use crate::signer::{SignerKey, signed_content};
use crate::state::HubGroup;
use crate::step::{Context, Req};

/// The `sender_index` of a client-signed request.
pub(crate) fn sender_index(request: &DSRequest) -> Result<u32, HubError> {
    match &request.authentication_data {
        DSAuthData::ClientSignature(sig) => Ok(sig.sender_index),
        DSAuthData::Anonymous => Err(HubError::ClientSignature(
            "this operation needs a client signature".into(),
        )),
    }
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

/// The leaf a request claims to be signed by, if it is client-signed.
pub fn claimed_signer(request: &DSRequest) -> Option<u32> {
    sender_index(request).ok()
}

/// Verifies a member's request (6.2 step 5): the leaf at `sender_index`
/// exists, signed the request, is the MLS sender of the embedded handshake
/// message (`framed`, where the sender is visible), and belongs to the
/// provider the request acts for.
pub(crate) fn verify_member(
    req: &Req,
    group: &HubGroup,
    framed: Option<&PublicMessage>,
) -> Result<u32, HubError> {
    let signature = MemberSignature::look_up(group, req.request, req.ctx)?;
    signature.check(req.crypto, req.request)?;
    if let Some(message) = framed {
        framed_sender_is(signature.index, message)?;
    }
    check_origin(req, group, signature.index)?;
    Ok(signature.index)
}

/// Checks that `sender_index` is the member sender named in the framing of
/// the embedded handshake message (6.1), before anything validates that
/// message: a request signed by one member for another member's commit or
/// proposal is a client-signature failure (step 5 of 6.2), whatever else
/// is wrong with the message. A sender that is not a member is left to MLS
/// validation.
pub(crate) fn framed_sender_is(index: u32, message: &PublicMessage) -> Result<(), HubError> {
    if let MlsMessageBodyIn::PublicMessage(public) = message.parsed()
        && let Sender::Member(leaf) = public.sender()
        && leaf.u32() != index
    {
        return Err(HubError::ClientSignature(format!(
            "sender_index {index} is not the message's sender {}",
            leaf.u32()
        )));
    }
    Ok(())
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
        let checked_before = ctx
            .verified
            .as_ref()
            .is_some_and(|v| v.covers(index, &key, request));
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

/// The member at `index` must belong to the provider the request acts
/// for (a provider for its own clients, the hub's clients for its domain).
pub(crate) fn check_origin(req: &Req, group: &HubGroup, index: u32) -> Result<(), HubError> {
    let member = group
        .member(index)
        .ok_or_else(|| HubError::NotAMember(format!("no member at leaf {index}")))?;
    let acting = req.ctx.origin.acts_for(req.config);
    if &member.domain != acting {
        return Err(not_for(acting, &member.client));
    }
    Ok(())
}

/// A ClientID the request names or introduces must belong to the provider
/// it acts for: the sending provider, or for the hub's own clients the
/// hub's domain (`docs/protocol.md` 6.1).
pub(crate) fn acts_for(req: &Req, client: &ClientId) -> Result<(), HubError> {
    let acting = req.ctx.origin.acts_for(req.config);
    if &client.domain() != acting {
        return Err(not_for(acting, client));
    }
    Ok(())
}

fn not_for(acting: &ProviderDomain, client: &ClientId) -> HubError {
    HubError::NotAllowed(format!("{acting} may not act for {client}"))
}
