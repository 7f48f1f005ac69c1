//! The hub's state of one group, and how it is stored.
//!
//! OpenMLS keeps a `PublicGroup`'s state behind its storage traits. The hub
//! gives each group its own small [`GroupStorage`] whose values are kept
//! serialized, so that persisting a step is copying bytes, and loading a
//! group is `PublicGroup::load` from those bytes: no re-validation of the
//! tree (which is quadratic at large N and would re-check every leaf's
//! lifetime).

use std::cell::{OnceCell, RefCell};
use std::collections::HashSet;

use mimid_wire::{ClientId, GroupKind, UserId};
use openmls::prelude::{GroupId as MlsGroupId, LeafNodeIndex, PublicGroup};
use openmls_traits::public_storage::PublicStorageProvider;
use openmls_traits::storage::{CURRENT_VERSION, traits};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{HubError, internal};
use crate::signer::SignerKey;

/// Format tag of the persisted state; bumped when the layout changes.
const STATE_FORMAT: u16 = 1;

/// Errors of [`GroupStorage`] (serialization only: it is in memory).
#[derive(Debug, thiserror::Error)]
#[error("group storage: {0}")]
pub struct StorageError(String);

fn enc<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_stdvec(value).map_err(|e| StorageError(e.to_string()))
}

fn dec<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| StorageError(e.to_string()))
}

/// One group's OpenMLS public state, serialized value by value. The values
/// are byte strings to serde (`ByteBuf`), so persisting the state copies
/// them instead of visiting every byte.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct GroupStorage {
    tree: RefCell<Option<ByteBuf>>,
    context: RefCell<Option<ByteBuf>>,
    interim_transcript_hash: RefCell<Option<ByteBuf>>,
    confirmation_tag: RefCell<Option<ByteBuf>>,
    /// (proposal ref, queued proposal), in arrival order.
    proposals: RefCell<Vec<(ByteBuf, ByteBuf)>>,
}

fn put<T: Serialize>(cell: &RefCell<Option<ByteBuf>>, value: &T) -> Result<(), StorageError> {
    *cell.borrow_mut() = Some(ByteBuf::from(enc(value)?));
    Ok(())
}

fn get<T: serde::de::DeserializeOwned>(
    cell: &RefCell<Option<ByteBuf>>,
) -> Result<Option<T>, StorageError> {
    cell.borrow().as_deref().map(|b| dec(b)).transpose()
}

impl PublicStorageProvider<CURRENT_VERSION> for GroupStorage {
    type PublicError = StorageError;

    fn write_tree<G: traits::GroupId<CURRENT_VERSION>, T: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        _: &G,
        tree: &T,
    ) -> Result<(), StorageError> {
        put(&self.tree, tree)
    }

    fn write_interim_transcript_hash<
        G: traits::GroupId<CURRENT_VERSION>,
        H: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
        hash: &H,
    ) -> Result<(), StorageError> {
        put(&self.interim_transcript_hash, hash)
    }

    fn write_context<
        G: traits::GroupId<CURRENT_VERSION>,
        C: traits::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
        context: &C,
    ) -> Result<(), StorageError> {
        put(&self.context, context)
    }

    fn write_confirmation_tag<
        G: traits::GroupId<CURRENT_VERSION>,
        T: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
        tag: &T,
    ) -> Result<(), StorageError> {
        put(&self.confirmation_tag, tag)
    }

    fn queue_proposal<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
        P: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
        proposal_ref: &R,
        proposal: &P,
    ) -> Result<(), StorageError> {
        self.proposals.borrow_mut().push((
            ByteBuf::from(enc(proposal_ref)?),
            ByteBuf::from(enc(proposal)?),
        ));
        Ok(())
    }

    fn queued_proposals<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
        P: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
    ) -> Result<Vec<(R, P)>, StorageError> {
        self.proposals
            .borrow()
            .iter()
            .map(|(r, p)| Ok((dec(r)?, dec(p)?)))
            .collect()
    }

    fn tree<G: traits::GroupId<CURRENT_VERSION>, T: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        _: &G,
    ) -> Result<Option<T>, StorageError> {
        get(&self.tree)
    }

    fn group_context<
        G: traits::GroupId<CURRENT_VERSION>,
        C: traits::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
    ) -> Result<Option<C>, StorageError> {
        get(&self.context)
    }

    fn interim_transcript_hash<
        G: traits::GroupId<CURRENT_VERSION>,
        H: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
    ) -> Result<Option<H>, StorageError> {
        get(&self.interim_transcript_hash)
    }

    fn confirmation_tag<
        G: traits::GroupId<CURRENT_VERSION>,
        T: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
    ) -> Result<Option<T>, StorageError> {
        get(&self.confirmation_tag)
    }

    fn delete_tree<G: traits::GroupId<CURRENT_VERSION>>(&self, _: &G) -> Result<(), StorageError> {
        *self.tree.borrow_mut() = None;
        Ok(())
    }

    fn delete_confirmation_tag<G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _: &G,
    ) -> Result<(), StorageError> {
        *self.confirmation_tag.borrow_mut() = None;
        Ok(())
    }

    fn delete_context<G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _: &G,
    ) -> Result<(), StorageError> {
        *self.context.borrow_mut() = None;
        Ok(())
    }

    fn delete_interim_transcript_hash<G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _: &G,
    ) -> Result<(), StorageError> {
        *self.interim_transcript_hash.borrow_mut() = None;
        Ok(())
    }

    fn remove_proposal<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
        proposal_ref: &R,
    ) -> Result<(), StorageError> {
        let key = enc(proposal_ref)?;
        self.proposals
            .borrow_mut()
            .retain(|(r, _)| r[..] != key[..]);
        Ok(())
    }

    fn clear_proposal_queue<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _: &G,
    ) -> Result<(), StorageError> {
        self.proposals.borrow_mut().clear();
        Ok(())
    }
}

/// A client added in an epoch, as `/welcome_information` needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedClient {
    /// `KeyPackageRef` of the KeyPackage it was added with.
    #[serde(with = "serde_bytes")]
    pub key_package_ref: Vec<u8>,
    pub leaf_index: u32,
    #[serde(with = "serde_bytes")]
    pub signature_key: Vec<u8>,
    /// The provider of the added client (only it may fetch for it).
    pub client_domain: String,
}

/// What joiners of one epoch need: its tree and GroupInfo, and who was
/// added (only they may fetch it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinerSnapshot {
    pub epoch: u64,
    /// `optional<Node> ratchet_tree<V>` of the epoch.
    #[serde(with = "serde_bytes")]
    pub ratchet_tree: Vec<u8>,
    /// `MLSMessage` (group_info) of the epoch.
    #[serde(with = "serde_bytes")]
    pub group_info: Vec<u8>,
    pub added: Vec<AddedClient>,
}

impl JoinerSnapshot {
    pub fn to_bytes(&self) -> Result<Vec<u8>, HubError> {
        enc(self).map_err(internal)
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HubError> {
        dec(bytes).map_err(internal)
    }
}

/// What the hub keeps beside the MLS state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupMeta {
    pub kind: u8,
    /// The current epoch's GroupInfo (`MLSMessage`), rebuilt from the last
    /// commit and its PartialGroupInfo.
    #[serde(with = "serde_bytes")]
    pub group_info: Vec<u8>,
    /// For a connection group: the user invited into it.
    pub invited_user: Option<String>,
    pub created_at: u64,
}

impl GroupMeta {
    pub fn kind(&self) -> GroupKind {
        if self.kind == 1 {
            GroupKind::Connection
        } else {
            GroupKind::Regular
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    format: u16,
    meta: GroupMeta,
    storage: GroupStorage,
}

/// A member as the hub routes to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub leaf_index: u32,
    pub client: ClientId,
    /// `client`'s provider, kept because every fan-out groups by it.
    pub domain: mimid_wire::ProviderDomain,
}

/// One hosted group, loaded.
pub struct HubGroup {
    pub(crate) public: PublicGroup,
    pub(crate) storage: GroupStorage,
    pub(crate) meta: GroupMeta,
    /// Members by leaf index, derived from the tree (cached because every
    /// message needs them).
    pub(crate) members: Vec<MemberInfo>,
    /// The users of `members`, built when a rule first asks (loading a
    /// group, which every cold request does, needs no user).
    users: OnceCell<HashSet<UserId>>,
    /// Decoded Ed25519 keys of members who signed since the last commit.
    ed25519_keys: RefCell<std::collections::HashMap<u32, SignerKey>>,
}

impl HubGroup {
    pub(crate) fn new(
        public: PublicGroup,
        storage: GroupStorage,
        meta: GroupMeta,
    ) -> Result<Self, HubError> {
        let members = members_of(&public)?;
        Ok(HubGroup {
            public,
            storage,
            meta,
            users: OnceCell::new(),
            members,
            ed25519_keys: RefCell::default(),
        })
    }

    /// Loads a group from its persisted bytes without re-validating it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HubError> {
        let persisted: Persisted = dec(bytes).map_err(internal)?;
        if persisted.format != STATE_FORMAT {
            return Err(HubError::Internal(format!(
                "unknown state format {}",
                persisted.format
            )));
        }
        let group_id = group_id_of_storage(&persisted.storage)?;
        let public = PublicGroup::load(&persisted.storage, &group_id)
            .map_err(internal)?
            .ok_or_else(|| HubError::Internal("incomplete group state".into()))?;
        Self::new(public, persisted.storage, persisted.meta)
    }

    /// The persisted form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HubError> {
        #[derive(Serialize)]
        struct PersistedRef<'a> {
            format: u16,
            meta: &'a GroupMeta,
            storage: &'a GroupStorage,
        }
        enc(&PersistedRef {
            format: STATE_FORMAT,
            meta: &self.meta,
            storage: &self.storage,
        })
        .map_err(internal)
    }

    pub fn epoch(&self) -> u64 {
        self.public.group_context().epoch().as_u64()
    }

    pub fn tree_hash(&self) -> &[u8] {
        self.public.group_context().tree_hash()
    }

    pub fn members(&self) -> &[MemberInfo] {
        &self.members
    }

    pub fn meta(&self) -> &GroupMeta {
        &self.meta
    }

    pub fn public_group(&self) -> &PublicGroup {
        &self.public
    }

    /// The OpenMLS group and its storage, e.g. to measure raw OpenMLS
    /// processing on exactly the state the hub holds.
    pub fn into_parts(self) -> (PublicGroup, GroupStorage) {
        (self.public, self.storage)
    }

    pub(crate) fn member(&self, leaf_index: u32) -> Option<&MemberInfo> {
        // `members` is in leaf order.
        self.members
            .binary_search_by_key(&leaf_index, |m| m.leaf_index)
            .ok()
            .and_then(|i| self.members.get(i))
    }

    /// Drops a leaf's cached key (its update path may have changed it).
    pub(crate) fn forget_key(&mut self, leaf_index: u32) {
        self.ed25519_keys.borrow_mut().remove(&leaf_index);
    }

    pub(crate) fn refresh_members(&mut self) -> Result<(), HubError> {
        self.members = members_of(&self.public)?;
        self.users = OnceCell::new();
        self.ed25519_keys.borrow_mut().clear();
        Ok(())
    }

    /// Signature key of a current leaf.
    pub(crate) fn leaf_key(&self, leaf_index: u32) -> Option<Vec<u8>> {
        self.public
            .leaf(LeafNodeIndex::new(leaf_index))
            .map(|leaf| leaf.signature_key().as_slice().to_vec())
    }

    /// The decoded Ed25519 key of the leaf `leaf_index` (cached: decoding a
    /// key is a good part of a verification). `None`: no such leaf.
    pub fn signer_key(&self, leaf_index: u32) -> Option<Result<SignerKey, HubError>> {
        if let Some(key) = self.ed25519_keys.borrow().get(&leaf_index) {
            return Some(Ok(*key));
        }
        let key = SignerKey::from_slice(&self.leaf_key(leaf_index)?);
        if let Ok(key) = &key {
            self.ed25519_keys.borrow_mut().insert(leaf_index, *key);
        }
        Some(key)
    }

    /// Does any current member belong to `user`?
    pub(crate) fn has_user(&self, user: &UserId) -> bool {
        self.users
            .get_or_init(|| self.members.iter().map(|m| m.client.user()).collect())
            .contains(user)
    }
}

fn group_id_of_storage(storage: &GroupStorage) -> Result<MlsGroupId, HubError> {
    let context: openmls::prelude::GroupContext = get(&storage.context)
        .map_err(internal)?
        .ok_or_else(|| HubError::Internal("stored group has no context".into()))?;
    Ok(context.group_id().clone())
}

/// The ClientID of a leaf's BasicCredential.
pub(crate) fn client_of_credential(
    credential: &openmls::prelude::Credential,
) -> Result<ClientId, String> {
    let basic = openmls::prelude::BasicCredential::try_from(credential.clone())
        .map_err(|_| "credential is not a BasicCredential".to_string())?;
    let identity = std::str::from_utf8(basic.identity())
        .map_err(|_| "credential identity is not UTF-8".to_string())?;
    identity
        .parse::<ClientId>()
        .map_err(|e| format!("credential identity: {e}"))
}

fn members_of(public: &PublicGroup) -> Result<Vec<MemberInfo>, HubError> {
    public
        .members()
        .map(|m| {
            // Every leaf was checked when it entered the group; a stored
            // group with a bad identity is corrupted state.
            let client = client_of_credential(&m.credential).map_err(HubError::Internal)?;
            Ok(MemberInfo {
                leaf_index: m.index.u32(),
                domain: client.domain(),
                client,
            })
        })
        .collect()
}
