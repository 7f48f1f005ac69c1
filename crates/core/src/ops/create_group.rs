//! `ds_create_group`: start hosting a group from its creator's leaf and
//! epoch-0 GroupInfo. The only time the hub validates a whole tree.

use mimid_wire::{
    CreateGroupRequest, DSResponseBody, GroupKind, MIMI_DS_GROUP_EXTENSION, MimiDsGroup, Wire,
};
use openmls::prelude::{LeafNodeIndex, MlsMessageBodyIn, ProposalStore, PublicGroup};

use crate::auth;
use crate::error::HubError;
use crate::state::{GroupMeta, GroupStorage, HubGroup, client_of_credential};
use crate::step::{Origin, Outcome, Req, Slot, Write};

pub(crate) fn handle(
    req: &Req,
    body: &CreateGroupRequest,
    slot: &mut Slot,
) -> Result<Outcome, HubError> {
    let (request, ctx) = (req.request, req.ctx);
    if matches!(ctx.origin, Origin::Provider(_)) && !req.config.allow_foreign_groups {
        return Err(HubError::NotAllowed(
            "this hub hosts groups only for its own clients".into(),
        ));
    }
    match slot {
        // Only the provider that reserved the id may use it.
        Slot::Reserved { until, by }
            if *until >= ctx.now && by == ctx.origin.acts_for(req.config) => {}
        Slot::Active(_) => return Err(HubError::GroupExists),
        _ => {
            return Err(HubError::NotAllowed(
                "the group id was not issued by this hub to this provider, or its reservation expired"
                    .into(),
            ));
        }
    }
    if auth::sender_index(request)? != 0 {
        return Err(HubError::ClientSignature("the creator is leaf 0".into()));
    }
    let MlsMessageBodyIn::GroupInfo(verifiable) = body.group_info.parsed().clone() else {
        return Err(HubError::InvalidGroupInfo("not a GroupInfo".into()));
    };

    // The one-leaf tree of a new group, as `optional<Node> ratchet_tree<V>`.
    let mut nodes = vec![0x01, 0x01];
    nodes.extend_from_slice(body.leaf_node.as_bytes());
    let tree_bytes = mimid_wire::Bytes(nodes)
        .to_bytes()
        .map_err(crate::error::internal)?;
    let tree = mimid_wire::RatchetTree::from_bytes(&tree_bytes)
        .map_err(|e| HubError::InvalidMls(format!("leaf_node: {e}")))?;
    let storage = GroupStorage::default();
    let (public, _) = PublicGroup::from_external(
        req.crypto,
        &storage,
        tree.parsed().clone(),
        verifiable,
        ProposalStore::new(),
    )
    .map_err(|e| HubError::InvalidGroupInfo(format!("{e:?}")))?;
    // The creator's leaf is known (and validated) only now.
    let leaf = public
        .leaf(LeafNodeIndex::new(0))
        .ok_or_else(|| HubError::InvalidMls("the new group has no leaf 0".into()))?;
    let creator = client_of_credential(leaf.credential()).map_err(HubError::InvalidMls)?;
    auth::verify(
        req.crypto,
        public.ciphersuite().signature_algorithm(),
        request,
        leaf.signature_key().as_slice(),
    )?;
    auth::acts_for(req, &creator)?;
    let context = public.group_context();
    if context.group_id().as_slice() != body.group_id.0.to_mls_bytes().as_slice() {
        return Err(HubError::InvalidGroupInfo(
            "GroupInfo is for another group id".into(),
        ));
    }
    if context.epoch().as_u64() != 0 {
        return Err(HubError::InvalidGroupInfo(
            "a new group starts at epoch 0".into(),
        ));
    }
    let ext = context
        .extensions()
        .unknown(MIMI_DS_GROUP_EXTENSION)
        .ok_or_else(|| {
            HubError::InvalidGroupInfo(
                "GroupContext lacks the mimi_ds_group extension (0xF0A0)".into(),
            )
        })?;
    let ds_group = MimiDsGroup::decode_exact(&ext.0, &mimid_wire::Limits::default())
        .map_err(|e| HubError::InvalidGroupInfo(format!("mimi_ds_group: {e}")))?;
    if ds_group.version != mimid_wire::PROTOCOL_VERSION {
        return Err(HubError::InvalidGroupInfo(format!(
            "mimi_ds_group version {}",
            ds_group.version
        )));
    }
    let meta = GroupMeta {
        kind: match ds_group.kind {
            GroupKind::Regular => 0,
            GroupKind::Connection => 1,
        },
        group_info: body.group_info.as_bytes().to_vec(),
        invited_user: None,
        created_at: ctx.now,
    };
    let group = HubGroup::new(public, storage, meta)?;
    let state = group.to_bytes()?;
    *slot = Slot::Active(Box::new(group));
    let mut outcome = Outcome::reply(DSResponseBody::Ok);
    outcome.write = Write::Put(state);
    Ok(outcome)
}
