//! `ds_add_users`: add users new to the group, with Welcomes.

use std::collections::{BTreeMap, BTreeSet};

use mimid_wire::{ClientId, GroupKind, MLSGroupUpdate, UserId, WelcomeMessage};

use super::additions;
use crate::commit;
use crate::error::HubError;
use crate::state::HubGroup;
use crate::step::{Outcome, Req, Write};

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
    welcomes: &[WelcomeMessage],
) -> Result<Outcome, HubError> {
    // The user a connection group invites, noted for external-commit info.
    let invited = std::cell::RefCell::new(None);
    let mut outcome = commit::run(req, group, update, welcomes, false, &|group, staged| {
        let added = additions(group, staged, "add_users")?;
        let Some(first) = added.first() else {
            return Err(HubError::NotAllowed(
                "add_users must add at least one client".into(),
            ));
        };
        if let Some(c) = added.iter().find(|c| group.has_user(&c.user())) {
            return Err(HubError::NotAllowed(format!(
                "{} is already in the group: use add_clients",
                c.user()
            )));
        }
        every_client_of_own_users(req, &added)?;
        let connection = group.meta().kind() == GroupKind::Connection;
        for add in staged.staged.add_proposals() {
            let marked = add
                .add_proposal()
                .key_package()
                .extensions()
                .unknown(mimid_wire::CONNECTION_KEY_PACKAGE_EXTENSION)
                .is_some();
            if marked != connection {
                return Err(HubError::NotAllowed(if connection {
                    "a connection group takes connection KeyPackages only".into()
                } else {
                    "connection KeyPackages are only for connection groups".into()
                }));
            }
        }
        if connection {
            if group.meta().invited_user.is_some() || added.iter().any(|c| c.user() != first.user())
            {
                return Err(HubError::NotAllowed(
                    "a connection group connects exactly two users".into(),
                ));
            }
            *invited.borrow_mut() = Some(first.user().to_string());
        }
        Ok(())
    })?;
    if let Some(user) = invited.into_inner() {
        group.meta.invited_user = Some(user);
        outcome.write = Write::Put(group.to_bytes()?);
    }
    Ok(outcome)
}

/// Every client of a user of the hub's own provider is added with it, as
/// the provider's client directory has them (`docs/protocol.md` 6.3): a
/// user joins with all its devices, and no ClientID the provider does not
/// know comes in under its name.
fn every_client_of_own_users(req: &Req, added: &[ClientId]) -> Result<(), HubError> {
    let mut own: BTreeMap<UserId, BTreeSet<ClientId>> = BTreeMap::new();
    for client in added.iter().filter(|c| c.domain() == req.config.domain) {
        own.entry(client.user()).or_default().insert(client.clone());
    }
    if own.is_empty() {
        return Ok(());
    }
    let Some(directory) = &req.ctx.directory else {
        return Err(HubError::NeedsDirectory(own.into_keys().collect()));
    };
    for (user, clients) in own {
        let known = directory.get(&user).cloned().unwrap_or_default();
        if let Some(stranger) = clients.difference(&known).next() {
            return Err(HubError::UnknownClient(format!(
                "{stranger} is not a client of {user}"
            )));
        }
        if let Some(missing) = known.difference(&clients).next() {
            return Err(HubError::NotAllowed(format!(
                "every client of {user} must be added: {missing} is not"
            )));
        }
    }
    Ok(())
}
