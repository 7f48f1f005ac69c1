//! The guest side against a store (`docs/protocol.md` 7): a delivery from a
//! hub is checked by the core ([`mimid_core::guest`]), answered as before
//! if it is a repeat, and otherwise stored once, in the queue of every
//! known recipient, and remembered, in one transaction, before the answer.

use mimid_core::HubError;
use mimid_core::guest::{self, Earlier, QsEndpoint};
use mimid_store::{Inbound, Store, StoreError};
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

    /// Handles a queueing request that `authenticated` sent on `endpoint`,
    /// whose exact body hashes to `body_sha256`; `now` in seconds since the
    /// Unix epoch. A repeat of an accepted request is answered as it was,
    /// and queues nothing.
    pub async fn deliver<S: Store>(
        &self,
        store: &S,
        authenticated: &ProviderDomain,
        endpoint: QsEndpoint,
        request: &QueueingServiceRequest,
        body_sha256: [u8; 32],
        now: u64,
    ) -> Result<QueueingServiceOk, ServiceError> {
        let in_flight = self.in_flight.enter();
        let checked = guest::check_delivery(&self.domain, authenticated, endpoint, request)?;
        let sender = checked.sender.as_str();
        let message_id = checked.message_id.0;
        // Stored first, asked after: a repeat is rare, and the insert
        // that remembers the delivery refuses one (`Conflict`) without
        // changing anything, so the common case reads nothing to rule it out.
        let deliver = checked.deliver;
        let ids: Vec<String> = deliver
            .recipients
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        let known = store.known_clients(&ids).await?;
        let accepted = guest::accept(&checked, &known)?;
        let answer = accepted
            .answer
            .to_bytes()
            .map_err(|e| HubError::Internal(format!("answer: {e}")))?;
        let inbound = Inbound {
            sender: sender.to_owned(),
            message_id,
            body_sha256,
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
        };
        match in_flight.durable(store.deliver(inbound).await?).await {
            Ok(()) => return Ok(accepted.answer),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        // A repeat (or a concurrent one that won the race): remembered by
        // now, answered as the first, or refused if its body differs.
        let earlier = store.remembered(sender, message_id).await?;
        let repeated = guest::repeat(
            &checked,
            &body_sha256,
            earlier.as_ref().map(|e| Earlier {
                body_sha256: &e.body_sha256,
                answer: &e.answer,
            }),
        )?;
        match repeated {
            Some(answer) => QueueingServiceOk::decode_exact(answer, &Limits::default())
                .map_err(|e| HubError::Internal(format!("remembered answer: {e}")).into()),
            // Remembered when the insert was refused, gone since: pruned
            // (after `delivery_expiry` + 1 day) in between. Try again.
            None => {
                Err(StoreError::Unavailable("a repeated delivery was just pruned".into()).into())
            }
        }
    }
}

impl Guest {
    /// [`Guest::deliver`] of a request that reaches it without HTTP (from
    /// this provider's own hub, or another hub in one process), its body
    /// hashed as encoded, the outcome as the outbox takes an answer.
    pub async fn deliver_sent<S: Store>(
        &self,
        store: &S,
        sender: &ProviderDomain,
        request: &QueueingServiceRequest,
        now: u64,
    ) -> crate::outbox::Sent {
        use sha2::Digest;
        let body = match request.to_bytes() {
            Ok(body) => body,
            Err(e) => return crate::outbox::Sent::Refused(format!("unencodable: {e}")),
        };
        let hash: [u8; 32] = sha2::Sha256::digest(&body).into();
        match self
            .deliver(
                store,
                sender,
                QsEndpoint::DeliverMessage,
                request,
                hash,
                now,
            )
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
