//! How a provider's outbox reaches a destination (`docs/protocol.md` 6.4,
//! 7): other providers over HTTPS on `/deliver_message`, its own clients
//! through its own guest side, without HTTP.

use std::sync::Arc;
use std::time::Duration;

use mimid_service::guest::LocalCourier;
use mimid_service::outbox::{Courier, Sent};
use mimid_store::Store;
use mimid_wire::{
    ProviderDomain, QueueingServiceRequest, QueueingServiceResponse, QueueingServiceResult, Wire,
};

use crate::client::TransportClient;
use crate::server::Endpoint;

/// The outbox's courier of a provider.
pub struct FederationCourier<S: Store> {
    local: LocalCourier<S>,
    client: Arc<TransportClient>,
}

impl<S: Store> FederationCourier<S> {
    pub fn new(local: LocalCourier<S>, client: Arc<TransportClient>) -> Self {
        FederationCourier { local, client }
    }

    async fn remote(&self, destination: &ProviderDomain, request: &QueueingServiceRequest) -> Sent {
        let body = match request.to_bytes() {
            Ok(body) => body,
            Err(e) => return Sent::Refused(format!("unencodable: {e}")),
        };
        let reply = match self
            .client
            .post(destination, Endpoint::DeliverMessage.path(), body)
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                return Sent::Retry {
                    after: None,
                    reason: e.to_string(),
                };
            }
        };
        let retry_after = reply.retry_after.map(Duration::from_secs);
        let answer = QueueingServiceResponse::decode_exact(&reply.body, &Default::default());
        match (reply.status, answer) {
            (
                200,
                Ok(QueueingServiceResponse {
                    result: QueueingServiceResult::Ok(ok),
                    message_id,
                    ..
                }),
            ) if message_id == request.message_id => Sent::Delivered(ok),
            (
                status,
                Ok(QueueingServiceResponse {
                    result: QueueingServiceResult::Error(error),
                    ..
                }),
            ) => Sent::for_status(status, error.to_string(), retry_after),
            (status, _) => Sent::for_status(
                // A 200 that is no answer to this request is the peer's
                // fault: try again rather than lose the message.
                if status == 200 { 502 } else { status },
                format!("HTTP {status} without a matching QueueingServiceResponse"),
                retry_after,
            ),
        }
    }
}

impl<S: Store> Courier for FederationCourier<S> {
    async fn send(&self, destination: &ProviderDomain, request: &QueueingServiceRequest) -> Sent {
        if destination == self.client.domain() {
            self.local.send(request).await
        } else {
            self.remote(destination, request).await
        }
    }
}
