//! Queueing messages: `/deliver_message` and `/connection_request`
//! (`docs/protocol.md` section 7).

use crate::codec::{rules, wire_enum, wire_struct};
use crate::dserror::DSError;
use crate::ident::{ClientId, GroupIdField, MessageId, ProviderDomain, UserId};
use crate::mls::{DeliverableMessage, WelcomeMessage};

wire_struct! {
    /// A group message for some of the receiver's clients.
    pub struct DeliverMessage {
        pub group_id: GroupIdField,
        pub epoch: u64,
        pub recipients: Vec<ClientId> [max_recipients],
        pub message: DeliverableMessage,
    }
}

wire_struct! {
    /// One message of a `deliver_messages` request: a `DeliverMessage` with
    /// the id it is remembered by, as if it had come on its own.
    pub struct BatchedMessage {
        pub message_id: MessageId,
        pub deliver_message: DeliverMessage,
    }
}

wire_struct! {
    /// Several messages of one hub in one request, queued in their order, in
    /// one transaction: all or none (`docs/protocol.md` 7).
    pub struct DeliverMessages {
        pub messages: Vec<BatchedMessage> [max_batch] where rules::non_empty,
    }
}

wire_struct! {
    /// A Welcome into a connection group, for one user of the receiver.
    pub struct ConnectionRequest {
        pub sender_user: UserId,
        pub recipient_user: UserId,
        pub group_id: GroupIdField,
        pub epoch: u64,
        pub welcome: WelcomeMessage,
    }
}

wire_enum! {
    /// `select` on `QueueingServiceRequestType`.
    pub enum QueueingServicePayload: u8 as "request_type" {
        DeliverMessage(DeliverMessage) = 0 as "deliver_message",
        ConnectionRequest(ConnectionRequest) = 1 as "connection_request",
        DeliverMessages(DeliverMessages) = 2 as "deliver_messages",
    }
}

wire_struct! {
    pub struct QueueingServiceRequest {
        pub version: u16 where rules::version,
        pub sender: ProviderDomain,
        pub recipient: ProviderDomain,
        pub message_id: MessageId,
        pub payload: QueueingServicePayload where rules::deliver_recipients,
    }
}

wire_struct! {
    pub struct QueueingServiceOk {
        pub unknown_recipients: Vec<ClientId> [max_recipients],
    }
}

wire_enum! {
    /// `select` on `ResponseType` for a queueing response.
    pub enum QueueingServiceResult: u8 as "response_type" {
        Ok(QueueingServiceOk) = 0 as "ok",
        Error(DSError) = 1 as "error",
    }
}

wire_struct! {
    pub struct QueueingServiceResponse {
        pub version: u16 where rules::version,
        pub message_id: MessageId,
        pub result: QueueingServiceResult,
    }
}

/// Encodes a `DeliverMessage` from its parts, with `message` the exact
/// bytes of an already validated `MLSMessage` (the hub stores what it
/// accepted without decoding it again).
pub fn encode_deliver_message(
    group_id: &crate::GroupId,
    epoch: u64,
    recipients: &[ClientId],
    message: &[u8],
) -> Result<Vec<u8>, crate::EncodeError> {
    use crate::codec::Wire as _;
    let group_id = GroupIdField(group_id.clone());
    let mut w = Vec::with_capacity(
        group_id.encoded_len() + 8 + crate::codec::vec_encoded_len(recipients) + message.len(),
    );
    group_id.encode(&mut w)?;
    epoch.encode(&mut w)?;
    crate::codec::encode_vec(recipients, &mut w)?;
    w.extend_from_slice(message);
    Ok(w)
}
