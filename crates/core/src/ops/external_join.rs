//! `ds_external_join`: a client of a user already in the group (a new
//! device, or a resync that removes its own old leaf) joins by external
//! commit.

use mimid_wire::MLSGroupUpdate;
use openmls::prelude::Proposal;

use super::removed_clients;
use crate::commit;
use crate::error::HubError;
use crate::state::{HubGroup, client_of_credential};
use crate::step::{Outcome, Req};

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
) -> Result<Outcome, HubError> {
    commit::run(req, group, update, &[], true, &|group, staged| {
        let leaf = staged
            .staged
            .update_path_leaf_node()
            .ok_or_else(|| HubError::InvalidMls("external commit without a path".into()))?;
        let joiner = client_of_credential(leaf.credential()).map_err(HubError::InvalidMls)?;
        let user = joiner.user();
        if !group.has_user(&user) {
            return Err(HubError::NotAllowed(format!(
                "{user} has no client in the group"
            )));
        }
        if staged
            .by_value()
            .any(|p| !matches!(p, Proposal::ExternalInit(_) | Proposal::Remove(_)))
        {
            return Err(HubError::NotAllowed(
                "an external join carries only ExternalInit and a resync Remove".into(),
            ));
        }
        let removed = removed_clients(group, staged)?;
        if removed.len() > 1 || removed.iter().any(|(_, c)| c != &joiner) {
            return Err(HubError::NotAllowed(
                "an external join may only remove the joiner's own old leaf".into(),
            ));
        }
        if removed.is_empty() && group.members().iter().any(|m| m.client == joiner) {
            return Err(HubError::NotAllowed(format!(
                "{joiner} is already a member: resync removes the old leaf"
            )));
        }
        Ok(())
    })
}
