//! `ds_welcome_information`: the tree of the epoch a joiner was added in,
//! for the clients added then and nobody else.

use mimid_wire::{DSResponseBody, WelcomeInformationRequest};

use crate::auth;
use crate::error::HubError;
use crate::state::{HubGroup, JoinerSnapshot};
use crate::step::Req;
use crate::step::{Origin, Outcome};

pub(crate) fn handle(
    req: &Req,
    group: &HubGroup,
    body: &WelcomeInformationRequest,
    snapshot: Option<&JoinerSnapshot>,
) -> Result<Outcome, HubError> {
    let snapshot = snapshot
        .filter(|s| s.epoch == body.epoch)
        .ok_or(HubError::NoWelcomeInformation(body.epoch))?;
    // The joiner cannot know its leaf yet; it names its KeyPackage instead.
    if auth::sender_index(req.request)? != u32::MAX {
        return Err(HubError::ClientSignature(
            "welcome_information uses sender_index 0xFFFFFFFF".into(),
        ));
    }
    let added = snapshot
        .added
        .iter()
        .find(|a| a.key_package_ref == body.key_package_ref.0)
        .ok_or_else(|| {
            HubError::NotAllowed(format!(
                "no client was added in epoch {} with this KeyPackage",
                body.epoch
            ))
        })?;
    let scheme = group.public.ciphersuite().signature_algorithm();
    auth::verify(req.crypto, scheme, req.request, &added.signature_key)?;
    if let Origin::Provider(p) = &req.ctx.origin
        && p.as_str() != added.client_domain
    {
        return Err(HubError::NotAllowed(format!(
            "{p} may not fetch welcome information for another provider's client"
        )));
    }
    let tree = mimid_wire::RatchetTree::from_bytes(&snapshot.ratchet_tree)
        .map_err(crate::error::internal)?;
    Ok(Outcome::reply(DSResponseBody::WelcomeInfo(tree)))
}
