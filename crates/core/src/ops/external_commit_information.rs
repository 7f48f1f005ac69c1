//! `ds_external_commit_information`: the current GroupInfo and tree, for a
//! client of a user that has a client in the group, vouched for by its
//! provider (or, for the hub's own clients, by the hub).

use mimid_wire::{DSResponseBody, ExternalCommitInfo, ExternalCommitInformationRequest};
use openmls::prelude::tls_codec::Serialize as _;

use crate::auth;
use crate::error::{HubError, internal};
use crate::state::HubGroup;
use crate::step::{Outcome, Req};

pub(crate) fn handle(
    req: &Req,
    group: &HubGroup,
    body: &ExternalCommitInformationRequest,
) -> Result<Outcome, HubError> {
    let requester = &body.requester;
    auth::acts_for(req, requester)?;
    let user = requester.user();
    if !group.has_user(&user) {
        return Err(HubError::NotAllowed(format!(
            "{user} has no client in the group"
        )));
    }
    let group_info =
        mimid_wire::GroupInfoMessage::from_bytes(&group.meta().group_info).map_err(internal)?;
    let tree = group
        .public
        .export_ratchet_tree()
        .tls_serialize_detached()
        .map_err(internal)?;
    let ratchet_tree = mimid_wire::RatchetTree::from_bytes(&tree).map_err(internal)?;
    Ok(Outcome::reply(DSResponseBody::ExternalCommitInfo(
        ExternalCommitInfo {
            group_info,
            ratchet_tree,
        },
    )))
}
