//! The guest side (`docs/protocol.md` 7): what a provider does with the
//! messages a hub delivers for its clients. Sans-IO like the hub: the
//! caller authenticated the sending provider, looks up what the store knows
//! (earlier deliveries with these ids, which recipients exist) and commits
//! what [`accept`] returns in one transaction.

use std::collections::HashMap;

use mimid_wire::{
    ClientId, ConnectionRequest, DeliverMessage, MessageId, ProviderDomain, QueueingServiceOk,
    QueueingServicePayload, QueueingServiceRequest, Wire,
};
use sha2::{Digest, Sha256};

use crate::error::HubError;

/// The endpoint a queueing request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QsEndpoint {
    DeliverMessage,
    ConnectionRequest,
}

/// A delivery that passed [`check_delivery`]: for this provider, from the
/// groups' hub, to this provider's clients.
#[derive(Debug)]
pub struct CheckedDelivery<'a> {
    pub sender: &'a ProviderDomain,
    /// Its messages in order, each id once.
    pub messages: Vec<CheckedMessage<'a>>,
}

/// One message of a checked delivery: the whole of a `deliver_message`, or
/// one of a `deliver_messages`.
#[derive(Debug)]
pub struct CheckedMessage<'a> {
    /// The id it is remembered by: the request's for a `deliver_message`,
    /// its own in a `deliver_messages`.
    pub message_id: &'a MessageId,
    pub deliver: &'a DeliverMessage,
    /// SHA-256 of the encoded `DeliverMessage`: what a repeat must carry to
    /// be one, however it is sent (alone or in a batch, 7).
    pub sha256: [u8; 32],
}

/// The checks of 7 that need nothing stored, in the documented order: the
/// request type belongs to the endpoint (400 `wrong_endpoint`), `sender` is
/// the authenticated provider (401), `recipient` and every recipient client
/// are this provider's (421), and each message's group has the sender as
/// its hub (403). A message id a batch names twice is sent once if the
/// messages are the same, and refused (409 `message_id_reuse`) if not.
pub fn check_delivery<'a>(
    domain: &ProviderDomain,
    authenticated: &'a ProviderDomain,
    endpoint: QsEndpoint,
    request: &'a QueueingServiceRequest,
) -> Result<CheckedDelivery<'a>, HubError> {
    use QueueingServicePayload as P;
    let messages: Vec<(&MessageId, &DeliverMessage)> = match (&request.payload, endpoint) {
        (P::DeliverMessage(d), QsEndpoint::DeliverMessage) => vec![(&request.message_id, d)],
        (P::DeliverMessages(batch), QsEndpoint::DeliverMessage) => batch
            .messages
            .iter()
            .map(|m| (&m.message_id, &m.deliver_message))
            .collect(),
        (P::ConnectionRequest(_), QsEndpoint::DeliverMessage) => {
            return Err(HubError::WrongEndpoint("connection_request"));
        }
        (P::DeliverMessage(_), QsEndpoint::ConnectionRequest) => {
            return Err(HubError::WrongEndpoint("deliver_message"));
        }
        (P::DeliverMessages(_), QsEndpoint::ConnectionRequest) => {
            return Err(HubError::WrongEndpoint("deliver_messages"));
        }
        (P::ConnectionRequest(_), QsEndpoint::ConnectionRequest) => {
            return Err(HubError::Internal(
                "a connection request is checked by check_connection_request".into(),
            ));
        }
    };
    check_envelope(domain, authenticated, request)?;
    let recipients = messages.iter().flat_map(|(_, d)| &d.recipients);
    if let Some(c) = recipients.clone().find(|c| &c.domain() != domain) {
        return Err(HubError::WrongRecipient(format!(
            "{c} is not a client of {domain}"
        )));
    }
    if let Some((_, d)) = messages
        .iter()
        .find(|(_, d)| &d.group_id.0.hub_domain != authenticated)
    {
        return Err(HubError::NotAllowed(format!(
            "only the group's hub {} delivers its messages, not {authenticated}",
            d.group_id.0.hub_domain
        )));
    }
    let mut checked = Vec::with_capacity(messages.len());
    let mut seen: HashMap<[u8; 16], [u8; 32]> = HashMap::new();
    for (message_id, deliver) in messages {
        let encoded = deliver
            .to_bytes()
            .map_err(|e| HubError::Internal(format!("a decoded message: {e}")))?;
        let sha256: [u8; 32] = Sha256::digest(&encoded).into();
        match seen.insert(message_id.0, sha256) {
            None => {}
            Some(earlier) if earlier == sha256 => continue,
            Some(_) => return Err(reuse(message_id)),
        }
        checked.push(CheckedMessage {
            message_id,
            deliver,
            sha256,
        });
    }
    Ok(CheckedDelivery {
        sender: authenticated,
        messages: checked,
    })
}

/// `sender` is the authenticated provider (401), `recipient` this one (421).
fn check_envelope(
    domain: &ProviderDomain,
    authenticated: &ProviderDomain,
    request: &QueueingServiceRequest,
) -> Result<(), HubError> {
    if &request.sender != authenticated {
        return Err(HubError::ProviderAuthentication(format!(
            "the request names {} as its sender, but {authenticated} sent it",
            request.sender
        )));
    }
    if &request.recipient != domain {
        return Err(HubError::WrongRecipient(format!(
            "this is {domain}, not {}",
            request.recipient
        )));
    }
    Ok(())
}

/// A connection request that passed [`check_connection_request`].
#[derive(Debug)]
pub struct CheckedConnectionRequest<'a> {
    pub sender: &'a ProviderDomain,
    pub message_id: &'a MessageId,
    pub request: &'a ConnectionRequest,
    /// SHA-256 of the encoded `ConnectionRequest`: what a repeat must carry.
    pub sha256: [u8; 32],
}

/// The checks of 7 on a connection request that need nothing stored: the
/// request type belongs to the endpoint (400), `sender` is the
/// authenticated provider (401), `recipient` and `recipient_user` are this
/// provider's (421), `sender_user` is the sender's (403). The caller then
/// checks that the user exists (404) and has not blocked the requester
/// (403 `blocked`).
pub fn check_connection_request<'a>(
    domain: &ProviderDomain,
    authenticated: &'a ProviderDomain,
    endpoint: QsEndpoint,
    request: &'a QueueingServiceRequest,
) -> Result<CheckedConnectionRequest<'a>, HubError> {
    use QueueingServicePayload as P;
    let connection = match (&request.payload, endpoint) {
        (P::ConnectionRequest(c), QsEndpoint::ConnectionRequest) => c,
        (P::ConnectionRequest(_), QsEndpoint::DeliverMessage) => {
            return Err(HubError::WrongEndpoint("connection_request"));
        }
        (P::DeliverMessage(_), _) => return Err(HubError::WrongEndpoint("deliver_message")),
        (P::DeliverMessages(_), _) => return Err(HubError::WrongEndpoint("deliver_messages")),
    };
    check_envelope(domain, authenticated, request)?;
    if &connection.recipient_user.domain() != domain {
        return Err(HubError::WrongRecipient(format!(
            "{} is not a user of {domain}",
            connection.recipient_user
        )));
    }
    if &connection.sender_user.domain() != authenticated {
        return Err(HubError::NotAllowed(format!(
            "{authenticated} asks for {}, a user of another provider",
            connection.sender_user
        )));
    }
    let encoded = connection
        .to_bytes()
        .map_err(|e| HubError::Internal(format!("a decoded request: {e}")))?;
    Ok(CheckedConnectionRequest {
        sender: authenticated,
        message_id: &request.message_id,
        request: connection,
        sha256: Sha256::digest(&encoded).into(),
    })
}

fn reuse(message_id: &MessageId) -> HubError {
    HubError::MessageIdReuse(format!("{message_id:?}"))
}

/// What the store remembers of an earlier delivery with the same
/// `(sender, message_id)`.
pub struct Earlier<'a> {
    pub body_sha256: &'a [u8],
    /// The encoded `QueueingServiceOk` it was answered with.
    pub answer: &'a [u8],
}

/// What a message remembered as delivered before means now: the same
/// message again (`sha256`) is answered as it was (the answer returned),
/// another one under its id is 409 `message_id_reuse`. Only accepted
/// deliveries are remembered (7).
pub fn repeat<'a>(
    message_id: &MessageId,
    sha256: &[u8; 32],
    earlier: Earlier<'a>,
) -> Result<&'a [u8], HubError> {
    if earlier.body_sha256 == sha256 {
        Ok(earlier.answer)
    } else {
        Err(reuse(message_id))
    }
}

/// An accepted message: its answer, and the clients whose queues get it
/// (in the order the hub listed them).
pub struct Accepted<'a> {
    pub answer: QueueingServiceOk,
    pub queued: Vec<&'a ClientId>,
}

/// Accepts a checked message: recipients this provider does not know
/// (`known` says which it does) are listed in the answer and skipped; the
/// others get the message.
pub fn accept<'a>(message: &CheckedMessage<'a>, known: impl Fn(&ClientId) -> bool) -> Accepted<'a> {
    let (queued, unknown): (Vec<&ClientId>, Vec<&ClientId>) =
        message.deliver.recipients.iter().partition(|c| known(c));
    Accepted {
        answer: QueueingServiceOk {
            unknown_recipients: unknown.into_iter().cloned().collect(),
        },
        queued,
    }
}

/// The answer to a whole request from its messages' answers: every unknown
/// recipient they name, once, in order.
pub fn merge(answers: impl IntoIterator<Item = QueueingServiceOk>) -> QueueingServiceOk {
    let mut unknown_recipients: Vec<ClientId> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for answer in answers {
        for client in answer.unknown_recipients {
            if seen.insert(client.as_str().to_owned()) {
                unknown_recipients.push(client);
            }
        }
    }
    QueueingServiceOk { unknown_recipients }
}
