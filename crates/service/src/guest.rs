//! The guest side against a store (`docs/protocol.md` 7): a delivery from a
//! hub is checked by the core ([`mimid_core::guest`]); its messages are
//! stored once each, in the queue of every known recipient, and remembered,
//! in one transaction, before the answer; those remembered already are
//! answered as before.

use std::collections::HashSet;

use mimid_core::HubError;
use mimid_core::guest::{self, CheckedMessage, Earlier, QsEndpoint};
use mimid_store::{Inbound, InboundConnectionRequest, Store, StoreError};
use mimid_wire::{
    Limits, ProviderDomain, QueueingServiceOk, QueueingServiceRequest, QueueingServiceResponse,
    QueueingServiceResult, Wire,
};

use crate::ServiceError;

/// A provider's guest side: queues what hubs deliver for its clients.
#[derive(Clone, Debug)]
pub struct Guest {
    domain: ProviderDomain,
    /// Deliveries being handled (clones share it).
    in_flight: crate::InFlight,
}

/// Times a delivery is tried again when a concurrent repeat of one of its
/// messages got in first (each time with the messages still unremembered).
const CONFLICTS: usize = 3;

impl Guest {
    pub fn new(domain: ProviderDomain) -> Self {
        Guest {
            domain,
            in_flight: crate::InFlight::default(),
        }
    }

    pub fn domain(&self) -> &ProviderDomain {
        &self.domain
    }

    /// Handles a queueing request that `authenticated` sent on `endpoint`;
    /// `now` in seconds since the Unix epoch. Its messages are queued in
    /// order, all or none; a message delivered before (alone or in another
    /// batch) is answered as it was and queued nothing.
    pub async fn deliver<S: Store>(
        &self,
        store: &S,
        authenticated: &ProviderDomain,
        endpoint: QsEndpoint,
        request: &QueueingServiceRequest,
        now: u64,
    ) -> Result<QueueingServiceOk, ServiceError> {
        let in_flight = self.in_flight.enter();
        let checked = guest::check_delivery(&self.domain, authenticated, endpoint, request)?;
        let sender = checked.sender.as_str();
        // Every recipient once, looked up together.
        let mut ids: Vec<&str> = checked
            .messages
            .iter()
            .flat_map(|m| m.deliver.recipients.iter().map(|c| c.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        let flags = store.known_clients(&ids).await?;
        let known: HashSet<&str> = ids
            .iter()
            .zip(flags)
            .filter(|(_, known)| *known)
            .map(|(id, _)| id.as_str())
            .collect();
        let mut todo: Vec<(&CheckedMessage<'_>, guest::Accepted<'_>)> = checked
            .messages
            .iter()
            .map(|m| (m, guest::accept(m, |c| known.contains(c.as_str()))))
            .collect();
        let mut answers: Vec<QueueingServiceOk> = Vec::with_capacity(todo.len());
        // Stored first, asked after: a repeat is rare, and the store
        // refuses one (`Conflict`) without changing anything, so the
        // common case reads nothing to rule it out.
        for _ in 0..CONFLICTS {
            let inbound = todo
                .iter()
                .map(|(m, accepted)| inbound(sender, m, accepted, now))
                .collect::<Result<Vec<_>, _>>()?;
            match in_flight.durable(store.deliver(inbound).await?).await {
                Ok(()) => {
                    answers.extend(todo.into_iter().map(|(_, accepted)| accepted.answer));
                    return Ok(guest::merge(answers));
                }
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            // Some were delivered before, or by a concurrent repeat that
            // won the race: answered as then (or refused if another message
            // came under the id); the rest are tried again.
            let mut rest = Vec::with_capacity(todo.len());
            for (m, accepted) in todo {
                match store.remembered(sender, m.message_id.0).await? {
                    Some(e) => {
                        let answer = guest::repeat(
                            m.message_id,
                            &m.sha256,
                            Earlier {
                                body_sha256: &e.body_sha256,
                                answer: &e.answer,
                            },
                        )?;
                        answers.push(
                            QueueingServiceOk::decode_exact(answer, &Limits::default()).map_err(
                                |e| HubError::Internal(format!("remembered answer: {e}")),
                            )?,
                        );
                    }
                    None => rest.push((m, accepted)),
                }
            }
            if rest.is_empty() {
                return Ok(guest::merge(answers));
            }
            todo = rest;
        }
        Err(
            StoreError::Unavailable("repeats of this delivery keep arriving meanwhile".into())
                .into(),
        )
    }
}

impl Guest {
    /// Handles a connection request (`docs/protocol.md` 7) that
    /// `authenticated` sent: checked, then stored for every client of its
    /// recipient user to see, unless the user blocked the requester. A
    /// repeat is answered as the first.
    pub async fn connection_request<S: Store>(
        &self,
        store: &S,
        authenticated: &ProviderDomain,
        request: &QueueingServiceRequest,
        now: u64,
    ) -> Result<QueueingServiceOk, ServiceError> {
        let in_flight = self.in_flight.enter();
        let checked = guest::check_connection_request(
            &self.domain,
            authenticated,
            QsEndpoint::ConnectionRequest,
            request,
        )?;
        let c = checked.request;
        if !store.user_exists(c.recipient_user.as_str()).await? {
            return Err(HubError::UnknownUser(format!("no user {}", c.recipient_user)).into());
        }
        if store
            .blocked(c.recipient_user.as_str(), c.sender_user.as_str())
            .await?
        {
            return Err(HubError::Blocked(format!(
                "{} does not take connection requests from {}",
                c.recipient_user, c.sender_user
            ))
            .into());
        }
        let ok = QueueingServiceOk {
            unknown_recipients: Vec::new(),
        };
        let answer = ok
            .to_bytes()
            .map_err(|e| HubError::Internal(format!("answer: {e}")))?;
        let stored = store
            .receive_connection_request(InboundConnectionRequest {
                sender: checked.sender.as_str().to_owned(),
                message_id: checked.message_id.0,
                body_sha256: checked.sha256,
                answer,
                sender_user: c.sender_user.as_str().to_owned(),
                recipient_user: c.recipient_user.as_str().to_owned(),
                group_id: c.group_id.0.to_mls_bytes(),
                epoch: c.epoch,
                welcome: c.welcome.as_bytes().to_vec(),
                now,
            })
            .await;
        drop(in_flight);
        match stored {
            Ok(()) => Ok(ok),
            Err(StoreError::Conflict) => {
                let earlier = store
                    .remembered(checked.sender.as_str(), checked.message_id.0)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Unavailable("a repeated request was just pruned".into())
                    })?;
                let answer = guest::repeat(
                    checked.message_id,
                    &checked.sha256,
                    Earlier {
                        body_sha256: &earlier.body_sha256,
                        answer: &earlier.answer,
                    },
                )?;
                QueueingServiceOk::decode_exact(answer, &Limits::default())
                    .map_err(|e| HubError::Internal(format!("remembered answer: {e}")).into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What the store keeps of an accepted message.
fn inbound(
    sender: &str,
    message: &CheckedMessage<'_>,
    accepted: &guest::Accepted<'_>,
    now: u64,
) -> Result<Inbound, HubError> {
    let answer = accepted
        .answer
        .to_bytes()
        .map_err(|e| HubError::Internal(format!("answer: {e}")))?;
    let deliver = message.deliver;
    Ok(Inbound {
        sender: sender.to_owned(),
        message_id: message.message_id.0,
        body_sha256: message.sha256,
        answer,
        group_id: deliver.group_id.0.to_mls_bytes(),
        epoch: deliver.epoch,
        message: deliver.message.as_bytes().to_vec(),
        recipients: accepted
            .queued
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        now,
    })
}

impl Guest {
    /// [`Guest::deliver`] of a request that reaches it without HTTP (from
    /// this provider's own hub, or another hub in one process), the
    /// outcome as the outbox takes an answer.
    pub async fn deliver_sent<S: Store>(
        &self,
        store: &S,
        sender: &ProviderDomain,
        request: &QueueingServiceRequest,
        now: u64,
    ) -> crate::outbox::Sent {
        match self
            .deliver(store, sender, QsEndpoint::DeliverMessage, request, now)
            .await
        {
            Ok(ok) => crate::outbox::Sent::Delivered(ok),
            Err(e) => crate::outbox::Sent::for_error(&e.to_ds_error()),
        }
    }
}

/// The response to a queueing request with `message_id`.
pub fn qs_response(
    message_id: mimid_wire::MessageId,
    result: Result<QueueingServiceOk, mimid_wire::DSError>,
) -> QueueingServiceResponse {
    QueueingServiceResponse {
        version: mimid_wire::PROTOCOL_VERSION,
        message_id,
        result: match result {
            Ok(ok) => QueueingServiceResult::Ok(ok),
            Err(e) => QueueingServiceResult::Error(e),
        },
    }
}

/// Carries the hub's deliveries for its own provider's clients to its own
/// guest side, without HTTP: the same checks, the same queues, the same
/// idempotence as a delivery from another hub.
pub struct LocalCourier<S: Store> {
    hub: std::sync::Arc<crate::HubService<S>>,
    guest: Guest,
}

impl<S: Store> LocalCourier<S> {
    pub fn new(hub: std::sync::Arc<crate::HubService<S>>) -> Self {
        let guest = Guest::new(hub.hub().config().domain.clone());
        LocalCourier { hub, guest }
    }

    /// Delivers `request` as sent by this provider's own hub.
    pub async fn send(&self, request: &QueueingServiceRequest) -> crate::outbox::Sent {
        self.guest
            .deliver_sent(
                self.hub.store(),
                self.guest.domain(),
                request,
                crate::unix_now(),
            )
            .await
    }
}
