//! `ds_welcome_information`: the tree of the epoch a joiner was added in,
//! for the clients added then and nobody else.

use mimid_wire::{DSResponseBody, WelcomeInformationRequest};

use crate::auth;
use crate::error::HubError;
use crate::state::{HubGroup, JoinerSnapshot};
use crate::step::{Outcome, Req};

pub(crate) fn handle(
    req: &Req,
    group: &HubGroup,
    body: &WelcomeInformationRequest,
    snapshot: Option<&JoinerSnapshot>,
) -> Result<Outcome, HubError> {
    // The joiner cannot know its leaf yet; it names its KeyPackage instead.
    if auth::sender_index(req.request)? != u32::MAX {
        return Err(HubError::ClientSignature(
            "welcome_information uses sender_index 0xFFFFFFFF".into(),
        ));
    }
    // The signer is the client added in `epoch` with that KeyPackage. No
    // snapshot and no such client get the same answer, so that nobody
    // without the KeyPackage learns which epochs added clients.
    let added = snapshot.filter(|s| s.epoch == body.epoch).and_then(|s| {
        s.added
            .iter()
            .find(|a| a.key_package_ref == body.key_package_ref.0)
            .map(|a| (s, a))
    });
    let Some((snapshot, added)) = added else {
        return Err(HubError::NoWelcomeInformation(body.epoch));
    };
    let scheme = group.public.ciphersuite().signature_algorithm();
    auth::verify(req.crypto, scheme, req.request, &added.signature_key)?;
    let acting = req.ctx.origin.acts_for(req.config);
    if acting.as_str() != added.client_domain {
        return Err(HubError::NotAllowed(format!(
            "{acting} may not fetch welcome information for another provider's client"
        )));
    }
    let tree = mimid_wire::RatchetTree::from_bytes(&snapshot.ratchet_tree)
        .map_err(crate::error::internal)?;
    Ok(Outcome::reply(DSResponseBody::WelcomeInfo(tree)))
}
