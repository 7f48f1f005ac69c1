//! Who receives what: recipients grouped by provider (`docs/protocol.md` 6.4).

use std::collections::BTreeMap;

use mimid_wire::{ClientId, GroupId, ProviderDomain};

use crate::state::HubGroup;
use crate::step::{Delivery, DeliveryKind};

/// Groups clients by provider, keeping their order.
fn by_provider(
    clients: impl IntoIterator<Item = (ProviderDomain, ClientId)>,
) -> BTreeMap<ProviderDomain, Vec<ClientId>> {
    let mut out: BTreeMap<ProviderDomain, Vec<ClientId>> = BTreeMap::new();
    for (domain, client) in clients {
        out.entry(domain).or_default().push(client);
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
        .map(|m| (m.domain.clone(), m.client.clone()));
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

fn grouped(
    recipients: impl IntoIterator<Item = (ProviderDomain, ClientId)>,
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
