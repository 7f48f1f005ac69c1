//! A hub with its state kept the way a store keeps it: serialized after
//! every step and loaded again from bytes before the next one.

#![allow(dead_code)]

use std::collections::HashMap;

use mimid_client::MimiClient;
use mimid_core::{
    Context, Delivery, DsEndpoint, Hub, HubConfig, HubError, HubGroup, JoinerSnapshot, Origin,
    Outcome, Slot, Write,
};
use mimid_wire::*;

pub struct TestHub {
    pub hub: Hub,
    pub state: Option<Vec<u8>>,
    pub reserved: Option<u64>,
    pub snapshots: HashMap<u64, JoinerSnapshot>,
    pub now: u64,
    counter: u8,
}

pub fn client(id: &str) -> MimiClient {
    MimiClient::new(id.parse().expect("client id")).expect("client")
}

pub fn wire_round_trip(request: &DSRequest) -> DSRequest {
    DSRequest::decode_exact(&request.to_bytes().expect("encode"), &Limits::default())
        .expect("decode")
}

impl TestHub {
    pub fn new(domain: &str) -> Self {
        TestHub {
            hub: Hub::new(HubConfig::new(domain.parse().expect("domain"))),
            state: None,
            reserved: None,
            snapshots: HashMap::new(),
            now: 1_795_000_000,
            counter: 0,
        }
    }

    fn slot(&self) -> Slot {
        match (&self.state, self.reserved) {
            (Some(bytes), _) => Slot::Active(Box::new(
                HubGroup::from_bytes(bytes).expect("stored state loads"),
            )),
            (None, Some(until)) => Slot::Reserved { until },
            (None, None) => Slot::Empty,
        }
    }

    /// Runs one request as the transport would: wire round trip, target,
    /// load, handle, persist.
    pub fn call(
        &mut self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        origin: Origin,
    ) -> Result<Outcome, HubError> {
        let request = wire_round_trip(request);
        self.counter = self.counter.wrapping_add(1);
        let ctx = Context {
            origin,
            now: self.now,
            random: [self.counter; 16],
        };
        let target = self.hub.target(endpoint, &request, &ctx)?;
        let snapshot = target
            .snapshot_epoch
            .and_then(|e| self.snapshots.get(&e).cloned());
        let mut slot = self.slot();
        let outcome = self
            .hub
            .handle(endpoint, &request, &mut slot, snapshot.as_ref(), &ctx)?;
        match &outcome.write {
            Write::None => {}
            Write::Reserve { until } => self.reserved = Some(*until),
            Write::Put(bytes) => self.state = Some(bytes.clone()),
            Write::Delete => {
                self.state = None;
                self.reserved = None;
                self.snapshots.clear();
            }
        }
        if let Some(s) = &outcome.snapshot {
            self.snapshots.insert(s.epoch, s.clone());
        }
        Ok(outcome)
    }

    pub fn op(&mut self, request: &DSRequest, origin: Origin) -> Result<Outcome, HubError> {
        self.call(DsEndpoint::GroupOperation, request, origin)
    }

    pub fn group(&self) -> HubGroup {
        HubGroup::from_bytes(self.state.as_ref().expect("group exists")).expect("loads")
    }

    pub fn epoch(&self) -> u64 {
        self.group().epoch()
    }
}

pub fn provider(domain: &str) -> Origin {
    Origin::Provider(domain.parse().expect("domain"))
}

/// The deliveries of an outcome, as (destination, kind, recipients, message bytes).
pub fn deliveries(
    outcome: &Outcome,
) -> Vec<(String, mimid_core::DeliveryKind, Vec<String>, Vec<u8>)> {
    outcome
        .deliveries
        .iter()
        .map(|d: &Delivery| {
            (
                d.destination.to_string(),
                d.kind,
                d.recipients.iter().map(|c| c.to_string()).collect(),
                outcome.messages[d.message].clone(),
            )
        })
        .collect()
}

/// The message delivered to `client`, as a client would receive it.
pub fn delivered_to(outcome: &Outcome, client: &str) -> Option<DeliverableMessage> {
    outcome
        .deliveries
        .iter()
        .find(|d| d.recipients.iter().any(|c| c.as_str() == client))
        .map(|d| DeliverableMessage::from_bytes(&outcome.messages[d.message]).expect("deliverable"))
}

pub fn welcome_for(outcome: &Outcome, client: &str) -> Option<WelcomeMessage> {
    outcome
        .deliveries
        .iter()
        .find(|d| {
            d.kind == mimid_core::DeliveryKind::Welcome
                && d.recipients.iter().any(|c| c.as_str() == client)
        })
        .map(|d| WelcomeMessage::from_bytes(&outcome.messages[d.message]).expect("welcome"))
}
