//! `ds_send_message`: an application message (PrivateMessage) for every
//! other member. The hub reads only group id, epoch and content type; the
//! sender is the leaf that signed the request. The outcome names the
//! message's digest, so that the adapter fans out the same bytes only once.

use mimid_wire::{DSResponseBody, SendMessageRequest};
use openmls::prelude::{ContentType, MlsMessageBodyIn};
use sha2::{Digest, Sha256};

use crate::auth;
use crate::error::HubError;
use crate::fanout;
use crate::state::HubGroup;
use crate::step::{AppMessage, Outcome, Req, Write};

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    body: &SendMessageRequest,
) -> Result<Outcome, HubError> {
    let sender = auth::verify_member(req, group, None)?;
    let MlsMessageBodyIn::PrivateMessage(message) = body.application_message.parsed() else {
        return Err(HubError::InvalidMls(
            "an application message must be a PrivateMessage".into(),
        ));
    };
    if message.content_type() != ContentType::Application {
        return Err(HubError::InvalidMls(
            "handshake messages must be PublicMessages".into(),
        ));
    }
    let current = group.epoch();
    let epoch = message.epoch().as_u64();
    let oldest = current.saturating_sub(req.config.app_message_past_epochs);
    if epoch > current || epoch < oldest {
        return Err(HubError::WrongEpoch { current });
    }
    let bytes = body.application_message.as_bytes();
    Ok(Outcome {
        response: DSResponseBody::Ok,
        write: Write::None,
        snapshot: None,
        prune_snapshots_before: None,
        messages: vec![bytes.to_vec()],
        deliveries: fanout::to_members_except(group, Some(sender), req.group_id, epoch, 0),
        app_message: Some(AppMessage {
            epoch,
            digest: Sha256::digest(bytes).into(),
        }),
        forget_app_messages: None,
    })
}
