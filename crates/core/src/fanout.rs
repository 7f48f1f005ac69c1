//! Who receives what: recipients grouped by provider (`docs/protocol.md` 6.4).

use std::collections::BTreeMap;

use mimid_wire::{ClientId, GroupId, ProviderDomain};

use crate::state::HubGroup;
use crate::step::{Delivery, DeliveryKind};

/// Groups clients by provider, keeping their order. A domain is cloned
/// once per provider, not once per member: this runs for every message.
fn by_provider<D: std::borrow::Borrow<ProviderDomain>>(
    clients: impl IntoIterator<Item = (D, ClientId)>,
) -> BTreeMap<ProviderDomain, Vec<ClientId>> {
    let mut out: BTreeMap<ProviderDomain, Vec<ClientId>> = BTreeMap::new();
    for (domain, client) in clients {
        match out.get_mut(domain.borrow()) {
            Some(clients) => clients.push(client),
            None => {
                out.insert(domain.borrow().clone(), vec![client]);
            }
        }
    }
    out
}

/// One delivery per provider of every current member but `sender`,
/// computed before the message is applied (so removed members still get the
/// commit that removes them).
pub(crate) fn to_members_except(
    group: &HubGroup,
    sender: Option<u32>,
    group_id: &GroupId,
    epoch: u64,
    message: usize,
) -> Vec<Delivery> {
    let recipients = group
        .members()
        .iter()
        .filter(|m| Some(m.leaf_index) != sender)
        .map(|m| (&m.domain, m.client.clone()));
    grouped(recipients, DeliveryKind::Message, group_id, epoch, message)
}

/// One delivery per provider of `recipients`.
pub(crate) fn deliveries(
    recipients: impl IntoIterator<Item = ClientId>,
    kind: DeliveryKind,
    group_id: &GroupId,
    epoch: u64,
    message: usize,
) -> Vec<Delivery> {
    grouped(
        recipients.into_iter().map(|c| (c.domain(), c)),
        kind,
        group_id,
        epoch,
        message,
    )
}

fn grouped<D: std::borrow::Borrow<ProviderDomain>>(
    recipients: impl IntoIterator<Item = (D, ClientId)>,
    kind: DeliveryKind,
    group_id: &GroupId,
    epoch: u64,
    message: usize,
) -> Vec<Delivery> {
    by_provider(recipients)
        .into_iter()
        .map(|(destination, recipients)| Delivery {
            destination,
            kind,
            group_id: group_id.clone(),
            epoch,
            recipients,
            message,
        })
        .collect()
}
