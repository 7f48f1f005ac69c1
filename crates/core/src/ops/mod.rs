//! One file per DS operation (`docs/protocol.md` 6.3).

use std::collections::HashSet;

use openmls::prelude::Proposal;

use crate::commit::Staged;
use crate::error::HubError;

use crate::state::{HubGroup, client_of_credential};

pub(crate) mod add_clients;
pub(crate) mod add_users;
pub(crate) mod create_group;
pub(crate) mod delete_group;
pub(crate) mod external_commit_information;
pub(crate) mod external_join;
pub(crate) mod re_initialize_group;
pub(crate) mod remove_clients;
pub(crate) mod remove_users;
pub(crate) mod request_group_id;
pub(crate) mod self_remove_client;
pub(crate) mod send_message;
pub(crate) mod update_client;
pub(crate) mod welcome_information;

/// Fails unless every by-value proposal satisfies `allowed`.
pub(crate) fn only_by_value(
    staged: &Staged,
    what: &str,
    allowed: impl Fn(&Proposal) -> bool,
) -> Result<(), HubError> {
    if staged.by_value().all(allowed) {
        Ok(())
    } else {
        Err(HubError::NotAllowed(format!(
            "this operation may only carry {what} by value"
        )))
    }
}

/// Clients the commit removes by value.
pub(crate) fn removed_clients(
    group: &HubGroup,
    staged: &Staged,
) -> Result<Vec<(u32, mimid_wire::ClientId)>, HubError> {
    staged
        .by_value()
        .filter_map(|p| match p {
            Proposal::Remove(r) => Some(r.removed().u32()),
            _ => None,
        })
        .map(|index| {
            group
                .member(index)
                .map(|m| (index, m.client.clone()))
                .ok_or_else(|| HubError::InvalidMls(format!("remove of empty leaf {index}")))
        })
        .collect()
}

/// Clients the commit adds.
pub(crate) fn added_clients(staged: &Staged) -> Result<Vec<mimid_wire::ClientId>, HubError> {
    staged
        .staged
        .add_proposals()
        .map(|a| {
            client_of_credential(a.add_proposal().key_package().leaf_node().credential())
                .map_err(HubError::InvalidMls)
        })
        .collect()
}

/// Leaves the commit removes, by value or by reference (pending
/// self-removes): what the group loses with it.
pub(crate) fn all_removed_leaves(staged: &Staged) -> HashSet<u32> {
    staged
        .staged
        .remove_proposals()
        .map(|r| r.remove_proposal().removed().u32())
        .collect()
}

/// No added client may already be a member, nor be added twice.
pub(crate) fn no_duplicate_clients(
    group: &HubGroup,
    added: &[mimid_wire::ClientId],
) -> Result<(), HubError> {
    let mut seen: HashSet<&mimid_wire::ClientId> =
        group.members().iter().map(|m| &m.client).collect();
    match added.iter().find(|client| !seen.insert(client)) {
        Some(client) => Err(HubError::NotAllowed(format!(
            "{client} is already in the group"
        ))),
        None => Ok(()),
    }
}

/// The clients a removing commit removes by value: only Remove proposals
/// by value, at least one, never the committer (who leaves by
/// self-remove).
pub(crate) fn removals(
    group: &HubGroup,
    staged: &Staged,
    op: &str,
) -> Result<Vec<(u32, mimid_wire::ClientId)>, HubError> {
    only_by_value(staged, "Remove proposals", |p| {
        matches!(p, Proposal::Remove(_))
    })?;
    let removed = removed_clients(group, staged)?;
    if removed.is_empty() {
        return Err(HubError::NotAllowed(format!(
            "{op} must remove at least one client"
        )));
    }
    if removed.iter().any(|(i, _)| *i == staged.committer) {
        return Err(HubError::NotAllowed(
            "use self_remove_client to leave".into(),
        ));
    }
    Ok(removed)
}

/// The clients an adding commit adds: only Add proposals by value, at least
/// one, none already a member or added twice.
pub(crate) fn additions(
    group: &HubGroup,
    staged: &Staged,
    op: &str,
) -> Result<Vec<mimid_wire::ClientId>, HubError> {
    only_by_value(staged, "Add proposals", |p| matches!(p, Proposal::Add(_)))?;
    let added = added_clients(staged)?;
    if added.is_empty() {
        return Err(HubError::NotAllowed(format!(
            "{op} must add at least one client"
        )));
    }
    no_duplicate_clients(group, &added)?;
    Ok(added)
}
