//! `ds_self_remove_client`: a member's Remove proposal of its own leaf,
//! kept pending until the next commit includes it by reference.

use mimid_wire::{DSResponseBody, SelfRemoveClientRequest};
use openmls::prelude::{
    ContentType, MlsMessageBodyIn, ProcessedMessageContent, Proposal, ProtocolMessage,
};

use crate::auth;
use crate::error::{HubError, internal, invalid};
use crate::fanout;
use crate::state::HubGroup;
use crate::step::{Outcome, Req, Write};

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    body: &SelfRemoveClientRequest,
) -> Result<Outcome, HubError> {
    let sender = auth::verify_member(req, group, Some(&body.proposal))?;
    let current = group.epoch();
    let MlsMessageBodyIn::PublicMessage(message) = body.proposal.parsed() else {
        return Err(HubError::InvalidMls(
            "handshake messages must be PublicMessages".into(),
        ));
    };
    if message.content_type() != ContentType::Proposal {
        return Err(HubError::InvalidMls("not a proposal".into()));
    }
    if message.epoch().as_u64() != current {
        return Err(HubError::WrongEpoch { current });
    }
    let processed = group
        .public
        .process_message(req.crypto, ProtocolMessage::from(message.clone()))
        .map_err(invalid)?;
    let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
        return Err(HubError::InvalidMls("not a proposal".into()));
    };
    // A member sender is `sender` (checked with the signature); a proposal
    // from anyone else is no self-remove.
    let own = matches!(queued.sender(), openmls::prelude::Sender::Member(s) if s.u32() == sender)
        && matches!(queued.proposal(), Proposal::Remove(r) if r.removed().u32() == sender);
    if !own {
        return Err(HubError::NotAllowed(
            "a self-remove removes only its sender".into(),
        ));
    }
    // At most one pending Remove per leaf: a commit must include every
    // pending proposal, and two Removes of one leaf cannot both be
    // committed, so a second would block every commit of the epoch. The
    // same proposal again (a retry) is answered as the first was.
    let pending = group
        .public
        .queued_proposals(&group.storage)
        .map_err(internal)?;
    let earlier = pending
        .iter()
        .find(|(_, p)| matches!(p.proposal(), Proposal::Remove(r) if r.removed().u32() == sender));
    if let Some((reference, _)) = earlier {
        return if reference == queued.proposal_reference_ref() {
            Ok(Outcome::reply(DSResponseBody::Ok))
        } else {
            Err(HubError::NotAllowed(format!(
                "a Remove of leaf {sender} is already pending in this epoch"
            )))
        };
    }
    let epoch = group.epoch();
    let deliveries = fanout::to_members_except(group, Some(sender), req.group_id, epoch, 0);
    group
        .public
        .add_proposal(&group.storage, *queued)
        .map_err(internal)?;
    Ok(Outcome {
        response: DSResponseBody::Ok,
        write: Write::Put(group.to_bytes()?),
        snapshot: None,
        prune_snapshots_before: None,
        messages: vec![body.proposal.as_bytes().to_vec()],
        deliveries,
        app_message: None,
        forget_app_messages: None,
    })
}
