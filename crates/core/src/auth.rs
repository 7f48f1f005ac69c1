//! Client signatures on DS requests (`docs/protocol.md` 6.1).

use mimid_wire::{CLIENT_SIGNATURE_LABEL, DSAuthData, DSRequest};
use openmls::prelude::{SignContent, tls_codec::Serialize as _};
use openmls_traits::{crypto::OpenMlsCrypto, types::SignatureScheme};

use crate::error::HubError;
use crate::hub::Origin;
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
    crypto
        .verify_signature(scheme, &content, key, &sig.signature.0)
        .map_err(|_| HubError::ClientSignature("signature does not verify".into()))
}

/// Verifies a member's request: the leaf at `sender_index` exists, signed
/// the request, and (over federation) belongs to the sending provider.
pub(crate) fn verify_member(
    crypto: &impl OpenMlsCrypto,
    group: &HubGroup,
    request: &DSRequest,
    origin: &Origin,
) -> Result<u32, HubError> {
    let index = sender_index(request)?;
    let scheme = group.public.ciphersuite().signature_algorithm();
    if scheme == SignatureScheme::ED25519 {
        // Members sign often: their decoded keys are cached by the group.
        let DSAuthData::ClientSignature(sig) = &request.authentication_data else {
            return Err(HubError::ClientSignature(
                "this operation needs a client signature".into(),
            ));
        };
        let content = signed_content(request, sig.sender_index)?;
        group.verify_ed25519(index, &content, &sig.signature.0)?;
    } else {
        let key = group
            .leaf_key(index)
            .ok_or_else(|| HubError::ClientSignature(format!("no member at leaf {index}")))?;
        verify(crypto, scheme, request, &key)?;
    }
    check_origin(group, index, origin)?;
    Ok(index)
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
