//! Which client a DS request makes act, so that a provider can hold each
//! of its own clients to itself before it submits or relays the request
//! (`docs/client-api.md`, "DS requests").
//!
//! The hub checks a request against its sending provider only (a ClientID
//! must belong to it, `docs/protocol.md` 6.1): below that, a provider
//! vouches for its clients. Most requests need nothing more, because they
//! are signed with the key of a leaf already in the group, and every leaf
//! came in with its own client's credential. Three requests bring in a
//! ClientID of their own, and a provider checks it before anything else:
//! the creator's leaf of `create_group`, the joiner's leaf of an external
//! commit, and the `requester` of `external_commit_information`. The hub
//! decodes the same bytes with OpenMLS and validates them; this reads only
//! the credential, without the group (a guest has no copy of it).

use mimid_wire::{ClientId, DSRequest, DSRequestBody, MLSGroupUpdate};
use openmls::prelude::Credential;
use tls_codec::{DeserializeBytes, VLBytes};

use crate::error::HubError;
use crate::state::client_of_credential;

/// The ClientID `request` introduces as its actor, if it introduces one.
pub fn acting_client(request: &DSRequest) -> Result<Option<ClientId>, HubError> {
    let update = match &request.request_body {
        DSRequestBody::CreateGroup(body) => {
            return leaf_node_client(body.leaf_node.as_bytes()).map(Some);
        }
        DSRequestBody::ExternalCommitInformation(body) => {
            return Ok(Some(body.requester.clone()));
        }
        DSRequestBody::DeleteGroup(b) => &b.group_update,
        DSRequestBody::AddUsers(b) => &b.group_update,
        DSRequestBody::RemoveUsers(b) => &b.group_update,
        DSRequestBody::AddClients(b) => &b.group_update,
        DSRequestBody::RemoveClients(b) => &b.group_update,
        DSRequestBody::UpdateClient(b) => &b.group_update,
        DSRequestBody::ExternalJoin(b) => &b.group_update,
        DSRequestBody::ReInitializeGroup(b) => &b.commit,
        DSRequestBody::RequestGroupId
        | DSRequestBody::SelfRemoveClient(_)
        | DSRequestBody::SendMessage(_)
        | DSRequestBody::WelcomeInformation(_) => return Ok(None),
    };
    external_joiner(update)
}

/// `Sender.sender_type` of a new member's commit (RFC 9420 6).
const NEW_MEMBER_COMMIT: u8 = 4;
/// `Sender.sender_type` values followed by a `uint32`.
const MEMBER: u8 = 1;
const EXTERNAL: u8 = 2;

/// The joiner of an external commit (the credential of its path's leaf);
/// `None` for a member's commit.
fn external_joiner(update: &MLSGroupUpdate) -> Result<Option<ClientId>, HubError> {
    let bad = |what: &str| HubError::InvalidMls(format!("commit: {what}"));
    // MLSMessage: version, wire_format, then the PublicMessage's
    // FramedContent (RFC 9420 6): group_id<V>, epoch, Sender.
    let bytes = update.commit.as_bytes();
    let rest = bytes.get(4..).ok_or_else(|| bad("too short"))?;
    let (_group_id, rest) = vl(rest).map_err(|_| bad("group_id"))?;
    let rest = rest.get(8..).ok_or_else(|| bad("epoch"))?;
    let (&sender_type, rest) = rest.split_first().ok_or_else(|| bad("sender"))?;
    let rest = match sender_type {
        NEW_MEMBER_COMMIT => rest,
        MEMBER | EXTERNAL => return Ok(None),
        _ => return Err(bad("sender type of a commit")),
    };
    // authenticated_data<V>, content_type, then Commit: proposals<V> and
    // optional<UpdatePath>, whose first field is the joiner's LeafNode.
    let (_aad, rest) = vl(rest).map_err(|_| bad("authenticated_data"))?;
    let rest = rest.get(1..).ok_or_else(|| bad("content_type"))?;
    let (_proposals, rest) = vl(rest).map_err(|_| bad("proposals"))?;
    match rest.split_first() {
        Some((1, leaf_node)) => leaf_node_client(leaf_node).map(Some),
        _ => Err(HubError::InvalidMls(
            "external commit without a path".into(),
        )),
    }
}

/// The client of a LeafNode's credential: after `encryption_key<V>` and
/// `signature_key<V>` (RFC 9420 7.2).
fn leaf_node_client(leaf_node: &[u8]) -> Result<ClientId, HubError> {
    let bad = |what: &str| HubError::InvalidMls(format!("leaf node: {what}"));
    let (_encryption_key, rest) = vl(leaf_node).map_err(|_| bad("encryption_key"))?;
    let (_signature_key, rest) = vl(rest).map_err(|_| bad("signature_key"))?;
    let (credential, _) =
        Credential::tls_deserialize_bytes(rest).map_err(|e| bad(&format!("credential: {e}")))?;
    client_of_credential(&credential).map_err(HubError::InvalidMls)
}

/// One variable-length vector (`<V>`), and what follows it.
fn vl(bytes: &[u8]) -> Result<(VLBytes, &[u8]), tls_codec::Error> {
    VLBytes::tls_deserialize_bytes(bytes)
}
