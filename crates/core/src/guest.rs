//! The guest side (`docs/protocol.md` 7): what a provider does with a
//! message a hub delivers for its clients. Sans-IO like the hub: the caller
//! authenticated the sending provider, looks up what the store knows (an
//! earlier request with this id, which recipients exist) and commits what
//! [`accept`] returns in one transaction.

use mimid_wire::{
    ClientId, DeliverMessage, MessageId, ProviderDomain, QueueingServiceOk, QueueingServicePayload,
    QueueingServiceRequest,
};

use crate::error::HubError;

/// The endpoint a queueing request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QsEndpoint {
    DeliverMessage,
    ConnectionRequest,
}

/// A delivery that passed [`check_delivery`]: for this provider, from the
/// group's hub, to this provider's clients.
#[derive(Debug)]
pub struct CheckedDelivery<'a> {
    pub sender: &'a ProviderDomain,
    pub message_id: &'a MessageId,
    pub deliver: &'a DeliverMessage,
}

/// The checks of 7 that need nothing stored, in the documented order: the
/// request type belongs to the endpoint (400 `wrong_endpoint`), `sender` is
/// the authenticated provider (401), `recipient` and every recipient client
/// are this provider's (421), and the group's hub is the sender (403).
pub fn check_delivery<'a>(
    domain: &ProviderDomain,
    authenticated: &'a ProviderDomain,
    endpoint: QsEndpoint,
    request: &'a QueueingServiceRequest,
) -> Result<CheckedDelivery<'a>, HubError> {
    let deliver = match (&request.payload, endpoint) {
        (QueueingServicePayload::DeliverMessage(d), QsEndpoint::DeliverMessage) => d,
        (QueueingServicePayload::ConnectionRequest(_), QsEndpoint::DeliverMessage) => {
            return Err(HubError::WrongEndpoint("connection_request"));
        }
        (QueueingServicePayload::DeliverMessage(_), QsEndpoint::ConnectionRequest) => {
            return Err(HubError::WrongEndpoint("deliver_message"));
        }
        (QueueingServicePayload::ConnectionRequest(_), QsEndpoint::ConnectionRequest) => {
            return Err(HubError::UnsupportedOperation(
                "connection requests are not served yet".into(),
            ));
        }
    };
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
    if let Some(c) = deliver.recipients.iter().find(|c| &c.domain() != domain) {
        return Err(HubError::WrongRecipient(format!(
            "{c} is not a client of {domain}"
        )));
    }
    if &deliver.group_id.0.hub_domain != authenticated {
        return Err(HubError::NotAllowed(format!(
            "only the group's hub {} delivers its messages, not {authenticated}",
            deliver.group_id.0.hub_domain
        )));
    }
    Ok(CheckedDelivery {
        sender: authenticated,
        message_id: &request.message_id,
        deliver,
    })
}

/// What the store remembers of an earlier request with the same
/// `(sender, message_id)`.
pub struct Earlier<'a> {
    pub body_sha256: &'a [u8],
    /// The encoded `QueueingServiceOk` it was answered with.
    pub answer: &'a [u8],
}

/// Whether a delivery was seen before: `Some(answer)` repeats the first
/// answer (the same body again), a different body is 409
/// `message_id_reuse`. Only accepted requests are remembered (7).
pub fn repeat<'a>(
    delivery: &CheckedDelivery<'_>,
    body_sha256: &[u8; 32],
    earlier: Option<Earlier<'a>>,
) -> Result<Option<&'a [u8]>, HubError> {
    match earlier {
        None => Ok(None),
        Some(e) if e.body_sha256 == body_sha256 => Ok(Some(e.answer)),
        Some(_) => Err(HubError::MessageIdReuse(format!(
            "{:?}",
            delivery.message_id
        ))),
    }
}

/// An accepted delivery: the answer, and the clients whose queues get the
/// message (in the order the hub listed them).
pub struct Accepted<'a> {
    pub answer: QueueingServiceOk,
    pub queued: Vec<&'a ClientId>,
}

/// Accepts a checked delivery: recipients this provider does not know are
/// listed in the answer and skipped; the others get the message. `known`
/// says, for each recipient in order, whether the client exists.
pub fn accept<'a>(
    delivery: &CheckedDelivery<'a>,
    known: &[bool],
) -> Result<Accepted<'a>, HubError> {
    let recipients = &delivery.deliver.recipients;
    if known.len() != recipients.len() {
        return Err(HubError::Internal(
            "one known flag per recipient expected".into(),
        ));
    }
    let (queued, unknown): (Vec<_>, Vec<_>) =
        recipients.iter().zip(known).partition(|(_, known)| **known);
    Ok(Accepted {
        answer: QueueingServiceOk {
            unknown_recipients: unknown.into_iter().map(|(c, _)| c.clone()).collect(),
        },
        queued: queued.into_iter().map(|(c, _)| c).collect(),
    })
}
