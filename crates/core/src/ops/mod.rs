//! One file per DS operation (`docs/protocol.md` 6.3).

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

/// The committer's identity must not change with its update path (G23).
pub(crate) fn committer_unchanged(group: &HubGroup, staged: &Staged) -> Result<(), HubError> {
    let Some(leaf) = staged.staged.update_path_leaf_node() else {
        return Ok(());
    };
    let new = client_of_credential(leaf.credential()).map_err(HubError::InvalidMls)?;
    match group.member(staged.committer) {
        Some(m) if m.client == new => Ok(()),
        _ => Err(HubError::NotAllowed(
            "a commit may not change the committer's ClientID".into(),
        )),
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

/// No added client may already be a member, nor be added twice.
pub(crate) fn no_duplicate_clients(
    group: &HubGroup,
    added: &[mimid_wire::ClientId],
) -> Result<(), HubError> {
    for (i, client) in added.iter().enumerate() {
        if group.members().iter().any(|m| &m.client == client) || added[..i].contains(client) {
            return Err(HubError::NotAllowed(format!(
                "{client} is already in the group"
            )));
        }
    }
    Ok(())
}

/// The clients a removing commit removes: only Remove proposals by value,
/// at least one, never the committer (who leaves by self-remove), and the
/// committer's identity unchanged.
pub(crate) fn removals(
    group: &HubGroup,
    staged: &Staged,
    op: &str,
) -> Result<Vec<(u32, mimid_wire::ClientId)>, HubError> {
    only_by_value(staged, "Remove proposals", |p| {
        matches!(p, Proposal::Remove(_))
    })?;
    committer_unchanged(group, staged)?;
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
/// one, none already a member or added twice, and the committer's identity
/// unchanged.
pub(crate) fn additions(
    group: &HubGroup,
    staged: &Staged,
    op: &str,
) -> Result<Vec<mimid_wire::ClientId>, HubError> {
    only_by_value(staged, "Add proposals", |p| matches!(p, Proposal::Add(_)))?;
    committer_unchanged(group, staged)?;
    let added = added_clients(staged)?;
    if added.is_empty() {
        return Err(HubError::NotAllowed(format!(
            "{op} must add at least one client"
        )));
    }
    no_duplicate_clients(group, &added)?;
    Ok(added)
}
