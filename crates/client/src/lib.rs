#![warn(missing_docs)]
//! `mimid-client`: a MIMI client on OpenMLS that produces and consumes
//! mimid's wire messages (`docs/protocol.md`).
//!
//! It is what the tests, the benchmarks and the demo drive the servers with,
//! and the start of an SDK for a provider's own clients. It follows the
//! profile's client rules: ciphersuite 0x0001, handshake messages as
//! PublicMessages, BasicCredentials whose identity is the ClientID, leaf
//! capabilities listing the MIMI extensions.
//!
//! A [`MimiClient`] makes DS requests and handles what its queue brings;
//! [`api::ProviderApi`] carries them to and from the client's provider. A
//! group between two clients, with the hub's part played by hand (the
//! Welcome and the tree go through the DS in real use):
//!
//! ```
//! use mimid_client::MimiClient;
//! use mimid_wire::{
//!     DSRequestBody, DeliverableMessage, GroupId, GroupKind, WelcomeMessage, Wire as _,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let group = GroupId { hub_domain: "a.example".parse()?, local_id: [1; 16] };
//! let mut alice = MimiClient::new("mimi://a.example/d/alice/laptop".parse()?)?;
//! let mut bob = MimiClient::new("mimi://b.example/d/bob/phone".parse()?)?;
//!
//! // ds_create_group, then ds_add_users with Bob's KeyPackage.
//! let _create = alice.create_group(&group, GroupKind::Regular)?;
//! let add = alice.add(&group, &[bob.key_package(false, false)?], false)?;
//! alice.merge_pending_commit(&group)?; // once the hub accepted it
//! let DSRequestBody::AddUsers(body) = &add.request_body else { unreachable!() };
//! let welcome = WelcomeMessage::from_bytes(body.welcome_messages[0].as_bytes())?;
//! // Bob joins with the tree of that epoch (from /welcome_information).
//! bob.join(&welcome, &alice.ratchet_tree(&group)?)?;
//! assert_eq!(bob.epoch_and_tree_hash(&group), alice.epoch_and_tree_hash(&group));
//!
//! // ds_send_message: the hub delivers it to Bob's queue as it is.
//! let send = alice.send_message(&group, b"hello")?;
//! let DSRequestBody::SendMessage(body) = &send.request_body else { unreachable!() };
//! let delivered = DeliverableMessage::from_bytes(body.application_message.as_bytes())?;
//! assert_eq!(bob.process(&delivered)?, Some(b"hello".to_vec()));
//! # Ok(()) }
//! ```

use std::collections::HashMap;

pub mod api;

use mimid_wire::{
    self as wire, ClientId, DSAuthData, DSRequest, DSRequestBody, GroupId, GroupIdField, GroupKind,
    MimiDsGroup, PROTOCOL_VERSION, Wire,
};
use openmls::prelude::{tls_codec::Serialize as _, *};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer;

/// The profile's mandatory ciphersuite.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Why the client could not make or handle a message.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// OpenMLS refused (its error, as text).
    #[error("MLS: {0}")]
    Mls(String),
    /// A message would not encode within the profile's bounds.
    #[error("encoding: {0}")]
    Encode(#[from] wire::EncodeError),
    /// A message does not decode.
    #[error("decoding: {0}")]
    Decode(#[from] wire::DecodeError),
    /// The client is not in this group.
    #[error("unknown group")]
    UnknownGroup,
}

fn mls<E: std::fmt::Debug>(e: E) -> ClientError {
    ClientError::Mls(format!("{e:?}"))
}

/// What a commit produced: the DS request to send and the new epoch's data.
pub struct CommitOutput {
    /// The request to submit.
    pub request: DSRequest,
}

/// One MIMI client (one device of one user).
pub struct MimiClient {
    id: ClientId,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    groups: HashMap<Vec<u8>, MlsGroup>,
}

impl MimiClient {
    /// A new client with a fresh Ed25519 signature key, its credential
    /// naming `id`.
    pub fn new(id: ClientId) -> Result<Self, ClientError> {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?;
        signer.store(provider.storage()).map_err(mls)?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.as_str().as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Ok(MimiClient {
            id,
            provider,
            signer,
            credential,
            groups: HashMap::new(),
        })
    }

    /// This client's ClientID.
    pub fn id(&self) -> &ClientId {
        &self.id
    }

    /// This client's signature public key.
    pub fn signature_public_key(&self) -> Vec<u8> {
        self.signer.to_public_vec()
    }

    /// Leaf capabilities: the defaults plus the MIMI extension types and
    /// `last_resort` (RFC 9420 requires KeyPackage extensions to be listed).
    pub fn capabilities() -> Capabilities {
        Capabilities::builder()
            .extensions(vec![
                ExtensionType::Unknown(wire::MIMI_DS_GROUP_EXTENSION),
                ExtensionType::Unknown(wire::CONNECTION_KEY_PACKAGE_EXTENSION),
                ExtensionType::LastResort,
            ])
            .build()
    }

    /// A KeyPackage; `connection` adds the connection marker extension,
    /// `last_resort` the last-resort extension.
    pub fn key_package(
        &self,
        connection: bool,
        last_resort: bool,
    ) -> Result<wire::KeyPackage, ClientError> {
        let mut builder = KeyPackage::builder().leaf_node_capabilities(Self::capabilities());
        if connection {
            let ext = Extension::Unknown(
                wire::CONNECTION_KEY_PACKAGE_EXTENSION,
                UnknownExtension(Vec::new()),
            );
            builder = builder.key_package_extensions(Extensions::single(ext).map_err(mls)?);
        }
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(mls)?;
        let bytes = bundle.key_package().tls_serialize_detached().map_err(mls)?;
        Ok(wire::KeyPackage::from_bytes(&bytes)?)
    }

    fn group(&mut self, group_id: &GroupId) -> Result<&mut MlsGroup, ClientError> {
        self.groups
            .get_mut(&group_id.to_mls_bytes())
            .ok_or(ClientError::UnknownGroup)
    }

    /// The group with the provider and signer, borrowed side by side.
    fn parts(
        &mut self,
        group_id: &GroupId,
    ) -> Result<(&mut MlsGroup, &OpenMlsRustCrypto, &SignatureKeyPair), ClientError> {
        let group = self
            .groups
            .get_mut(&group_id.to_mls_bytes())
            .ok_or(ClientError::UnknownGroup)?;
        Ok((group, &self.provider, &self.signer))
    }

    /// Builds and stages a commit with a new GroupInfo; `configure` chooses
    /// its proposals. Returns the `MLSGroupUpdate`, the Welcome if any, and
    /// the committer's leaf index.
    fn stage_commit(
        &mut self,
        group_id: &GroupId,
        configure: impl for<'b> FnOnce(CommitBuilder<'b, Initial>) -> CommitBuilder<'b, Initial>,
    ) -> Result<(wire::MLSGroupUpdate, Option<wire::WelcomeMessage>, u32), ClientError> {
        let (group, provider, signer) = self.parts(group_id)?;
        let bundle = configure(group.commit_builder())
            .load_psks(provider.storage())
            .map_err(mls)?
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .map_err(mls)?
            .stage_commit(provider)
            .map_err(mls)?;
        let sender = group.own_leaf_index().u32();
        let (update, welcome) = group_update_from(&bundle)?;
        Ok((update, welcome, sender))
    }

    /// The MLS group, for inspection.
    pub fn mls_group(&self, group_id: &GroupId) -> Option<&MlsGroup> {
        self.groups.get(&group_id.to_mls_bytes())
    }

    /// Signs a DS request body with this client's leaf key.
    pub fn sign_request(
        &self,
        body: DSRequestBody,
        sender_index: u32,
    ) -> Result<DSRequest, ClientError> {
        let tbs = wire::client_signature_tbs(PROTOCOL_VERSION, &body, sender_index)?;
        let content = SignContent::new(wire::CLIENT_SIGNATURE_LABEL, tbs.into())
            .tls_serialize_detached()
            .map_err(mls)?;
        let signature = self.signer.sign(&content).map_err(mls)?;
        Ok(DSRequest {
            version: PROTOCOL_VERSION,
            request_body: body,
            authentication_data: DSAuthData::ClientSignature(wire::ClientSignature {
                sender_index,
                signature: wire::ShortBytes(signature),
            }),
        })
    }

    /// Creates a group with a hub-issued id and returns `ds_create_group`.
    pub fn create_group(
        &mut self,
        group_id: &GroupId,
        kind: GroupKind,
    ) -> Result<DSRequest, ClientError> {
        let ext_data = MimiDsGroup {
            version: PROTOCOL_VERSION,
            kind,
        }
        .to_bytes()?;
        let extensions = Extensions::single(Extension::Unknown(
            wire::MIMI_DS_GROUP_EXTENSION,
            UnknownExtension(ext_data),
        ))
        .map_err(mls)?;
        let group = MlsGroup::builder()
            .with_group_id(openmls::group::GroupId::from_slice(
                &group_id.to_mls_bytes(),
            ))
            .ciphersuite(CIPHERSUITE)
            .with_wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(false)
            .with_capabilities(Self::capabilities())
            .with_group_context_extensions(extensions)
            .build(&self.provider, &self.signer, self.credential.clone())
            .map_err(mls)?;
        let leaf = group
            .own_leaf_node()
            .ok_or_else(|| ClientError::Mls("no own leaf".into()))?;
        let leaf_node = wire::LeafNode::from_bytes(&leaf.tls_serialize_detached().map_err(mls)?)?;
        let group_info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .map_err(mls)?
            .tls_serialize_detached()
            .map_err(mls)?;
        let body = DSRequestBody::CreateGroup(wire::CreateGroupRequest {
            group_id: GroupIdField(group_id.clone()),
            leaf_node,
            group_info: wire::GroupInfoMessage::from_bytes(&group_info)?,
        });
        self.groups.insert(group_id.to_mls_bytes(), group);
        self.sign_request(body, 0)
    }

    /// Stages a commit adding `key_packages` (without a forced path) and
    /// returns `ds_add_users` (or `ds_add_clients` when `clients` is set).
    /// The commit stays pending until [`MimiClient::merge_pending_commit`].
    pub fn add(
        &mut self,
        group_id: &GroupId,
        key_packages: &[wire::KeyPackage],
        clients: bool,
    ) -> Result<DSRequest, ClientError> {
        let kps = key_packages
            .iter()
            .map(|kp| {
                kp.parsed()
                    .clone()
                    .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .map_err(mls)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (group_update, welcome, sender) =
            self.stage_commit(group_id, |b| b.propose_adds(kps).force_self_update(false))?;
        let welcome_messages = welcome.into_iter().collect();
        let body = if clients {
            DSRequestBody::AddClients(wire::AddClientsRequest {
                group_update,
                welcome_messages,
            })
        } else {
            DSRequestBody::AddUsers(wire::AddUsersRequest {
                group_update,
                welcome_messages,
            })
        };
        self.sign_request(body, sender)
    }

    /// Stages a commit with a fresh path and returns `ds_update_client`.
    pub fn update(&mut self, group_id: &GroupId) -> Result<DSRequest, ClientError> {
        let (group_update, _, sender) =
            self.stage_commit(group_id, |b| b.force_self_update(true))?;
        self.sign_request(
            DSRequestBody::UpdateClient(wire::UpdateClientRequest { group_update }),
            sender,
        )
    }

    /// Stages a commit removing the leaves `removed` and returns its
    /// `MLSGroupUpdate`, to be wrapped as `ds_remove_users`,
    /// `ds_remove_clients` or `ds_delete_group`.
    pub fn remove(
        &mut self,
        group_id: &GroupId,
        removed: &[u32],
    ) -> Result<(wire::MLSGroupUpdate, u32), ClientError> {
        let removed: Vec<_> = removed.iter().map(|&i| LeafNodeIndex::new(i)).collect();
        let (group_update, _, sender) =
            self.stage_commit(group_id, |b| b.propose_removals(removed))?;
        Ok((group_update, sender))
    }

    /// Like [`MimiClient::remove`], with an update path whose leaf claims
    /// another identity (same keys): a commit the hub must refuse, since a
    /// commit may not change its committer's ClientID.
    pub fn remove_as(
        &mut self,
        group_id: &GroupId,
        removed: &[u32],
        identity: &ClientId,
    ) -> Result<(wire::MLSGroupUpdate, u32), ClientError> {
        let removed: Vec<_> = removed.iter().map(|&i| LeafNodeIndex::new(i)).collect();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_str().as_bytes().to_vec()).into(),
            signature_key: self.credential.signature_key.clone(),
        };
        let params = LeafNodeParameters::builder()
            .with_credential_with_key(credential)
            .with_capabilities(Self::capabilities())
            .build();
        let (group_update, _, sender) = self.stage_commit(group_id, |b| {
            b.propose_removals(removed)
                .force_self_update(true)
                .leaf_node_parameters(params)
        })?;
        Ok((group_update, sender))
    }

    /// The OpenMLS provider (crypto and storage) of this client, for tools
    /// that build what OpenMLS cannot (the golden vectors' ReInit commit).
    pub fn openmls_provider(&self) -> &OpenMlsRustCrypto {
        &self.provider
    }

    /// This client's signature key pair.
    pub fn signer(&self) -> &SignatureKeyPair {
        &self.signer
    }

    /// The signed GroupInfo of the current epoch (without the tree).
    pub fn group_info(
        &mut self,
        group_id: &GroupId,
    ) -> Result<wire::GroupInfoMessage, ClientError> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self
            .groups
            .get(&group_id.to_mls_bytes())
            .ok_or(ClientError::UnknownGroup)?;
        let gi = group
            .export_group_info(provider.crypto(), signer, false)
            .map_err(mls)?;
        Ok(wire::GroupInfoMessage::from_bytes(
            &gi.tls_serialize_detached().map_err(mls)?,
        )?)
    }

    /// This client's leaf index in a group.
    pub fn leaf_index(&self, group_id: &GroupId) -> Option<u32> {
        self.mls_group(group_id).map(|g| g.own_leaf_index().u32())
    }

    /// A Remove proposal of this client's own leaf: `ds_self_remove_client`.
    pub fn self_remove(&mut self, group_id: &GroupId) -> Result<DSRequest, ClientError> {
        self.self_remove_with_aad(group_id, &[])
    }

    /// [`MimiClient::self_remove`] with `authenticated_data` in the
    /// proposal: two such proposals differ only in it.
    pub fn self_remove_with_aad(
        &mut self,
        group_id: &GroupId,
        authenticated_data: &[u8],
    ) -> Result<DSRequest, ClientError> {
        let (group, provider, signer) = self.parts(group_id)?;
        group.set_aad(authenticated_data.to_vec());
        let proposal = group.leave_group(provider, signer).map_err(mls)?;
        let sender = group.own_leaf_index().u32();
        self.self_remove_request(&proposal, sender)
    }

    /// A Remove proposal of any leaf, framed as `ds_self_remove_client`
    /// (the hub must refuse it unless `leaf` is this client's own).
    pub fn propose_remove(
        &mut self,
        group_id: &GroupId,
        leaf: u32,
    ) -> Result<DSRequest, ClientError> {
        let (group, provider, signer) = self.parts(group_id)?;
        let (proposal, _) = group
            .propose_remove_member(provider, signer, LeafNodeIndex::new(leaf))
            .map_err(mls)?;
        let sender = group.own_leaf_index().u32();
        self.self_remove_request(&proposal, sender)
    }

    /// Puts `authenticated_data` into the framing of the next handshake or
    /// application message this client creates in the group (a commit of a
    /// chosen size, say).
    pub fn set_authenticated_data(
        &mut self,
        group_id: &GroupId,
        authenticated_data: &[u8],
    ) -> Result<(), ClientError> {
        self.group(group_id)?.set_aad(authenticated_data.to_vec());
        Ok(())
    }

    /// Frames a Remove proposal as a signed `ds_self_remove_client`.
    fn self_remove_request(
        &self,
        proposal: &MlsMessageOut,
        sender: u32,
    ) -> Result<DSRequest, ClientError> {
        let proposal =
            wire::PublicMessage::from_bytes(&proposal.tls_serialize_detached().map_err(mls)?)?;
        self.sign_request(
            DSRequestBody::SelfRemoveClient(wire::SelfRemoveClientRequest { proposal }),
            sender,
        )
    }

    /// Joins a group by external commit from `/external_commit_information`
    /// data (a new device of a user already in the group). The new group
    /// state is kept at once (a refusal by the hub means starting over).
    pub fn external_join(
        &mut self,
        info: &wire::ExternalCommitInfo,
    ) -> Result<DSRequest, ClientError> {
        let MlsMessageBodyIn::GroupInfo(group_info) = info.group_info.parsed().clone() else {
            return Err(ClientError::Mls("not a GroupInfo".into()));
        };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(false)
            .build();
        let params = LeafNodeParameters::builder()
            .with_capabilities(Self::capabilities())
            .build();
        let builder = MlsGroup::external_commit_builder()
            .with_ratchet_tree(info.ratchet_tree.parsed().clone())
            .with_config(config)
            .build_group(&self.provider, group_info, self.credential.clone())
            .map_err(mls)?
            .leaf_node_parameters(params);
        let (group, bundle) = builder
            .load_psks(self.provider.storage())
            .map_err(mls)?
            .create_group_info(true)
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .map_err(mls)?
            .finalize(&self.provider)
            .map_err(mls)?;
        let (group_update, _) = group_update_from(&bundle)?;
        let group_id = GroupId::from_mls_bytes(group.group_id().as_slice())?;
        let sender = group.own_leaf_index().u32();
        self.groups.insert(group_id.to_mls_bytes(), group);
        self.sign_request(
            DSRequestBody::ExternalJoin(wire::ExternalJoinRequest { group_update }),
            sender,
        )
    }

    /// `ds_welcome_information` for the epoch this client was added in,
    /// naming the KeyPackage it was added with.
    pub fn welcome_information_request(
        &self,
        group_id: &GroupId,
        epoch: u64,
        key_package: &wire::KeyPackage,
    ) -> Result<DSRequest, ClientError> {
        let reference = key_package
            .parsed()
            .clone()
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(mls)?
            .hash_ref(self.provider.crypto())
            .map_err(mls)?;
        let body = DSRequestBody::WelcomeInformation(wire::WelcomeInformationRequest {
            group_id: GroupIdField(group_id.clone()),
            epoch,
            key_package_ref: wire::Bytes(reference.as_slice().to_vec()),
        });
        // The joiner has no leaf index yet (docs/protocol.md 6.1).
        self.sign_request(body, u32::MAX)
    }

    /// Encrypts an application message: `ds_send_message`.
    pub fn send_message(
        &mut self,
        group_id: &GroupId,
        plaintext: &[u8],
    ) -> Result<DSRequest, ClientError> {
        let (group, provider, signer) = self.parts(group_id)?;
        let message = group
            .create_message(provider, signer, plaintext)
            .map_err(mls)?;
        let sender = group.own_leaf_index().u32();
        let application_message =
            wire::PrivateMessage::from_bytes(&message.tls_serialize_detached().map_err(mls)?)?;
        self.sign_request(
            DSRequestBody::SendMessage(wire::SendMessageRequest {
                application_message,
            }),
            sender,
        )
    }

    /// Applies this client's own staged commit after the hub accepted it.
    pub fn merge_pending_commit(&mut self, group_id: &GroupId) -> Result<(), ClientError> {
        let (group, provider, _) = self.parts(group_id)?;
        group.merge_pending_commit(provider).map_err(mls)
    }

    /// Drops this client's own staged commit after the hub refused it.
    pub fn clear_pending_commit(&mut self, group_id: &GroupId) -> Result<(), ClientError> {
        let (group, provider, _) = self.parts(group_id)?;
        group.clear_pending_commit(provider.storage()).map_err(mls)
    }

    /// The current public ratchet tree of a group.
    pub fn ratchet_tree(&mut self, group_id: &GroupId) -> Result<wire::RatchetTree, ClientError> {
        let tree = self.group(group_id)?.export_ratchet_tree();
        Ok(wire::RatchetTree::from_bytes(
            &tree.tls_serialize_detached().map_err(mls)?,
        )?)
    }

    /// Joins from a Welcome and the tree of the epoch it was added in.
    pub fn join(
        &mut self,
        welcome: &wire::WelcomeMessage,
        tree: &wire::RatchetTree,
    ) -> Result<GroupId, ClientError> {
        let welcome = match welcome.parsed().clone() {
            MlsMessageBodyIn::Welcome(w) => w,
            _ => return Err(ClientError::Mls("not a Welcome".into())),
        };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(false)
            .build();
        let group = StagedWelcome::new_from_welcome(
            &self.provider,
            &config,
            welcome,
            Some(tree.parsed().clone()),
        )
        .map_err(mls)?
        .into_group(&self.provider)
        .map_err(mls)?;
        let group_id = GroupId::from_mls_bytes(group.group_id().as_slice())?;
        self.groups.insert(group_id.to_mls_bytes(), group);
        Ok(group_id)
    }

    /// Processes a message delivered to this client. Commits from others are
    /// merged at once (the hub already ordered them); application messages
    /// return their plaintext.
    pub fn process(
        &mut self,
        message: &wire::DeliverableMessage,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let protocol = match message.parsed().clone() {
            MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            _ => return Err(ClientError::Mls("a Welcome is joined with `join`".into())),
        };
        let group_id = GroupId::from_mls_bytes(protocol.group_id().as_slice())?;
        let (group, provider, _) = self.parts(&group_id)?;
        let processed = group.process_message(provider, protocol).map_err(mls)?;
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => Ok(Some(app.into_bytes())),
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                group.merge_staged_commit(provider, *staged).map_err(mls)?;
                Ok(None)
            }
            ProcessedMessageContent::ProposalMessage(p) => {
                group
                    .store_pending_proposal(provider.storage(), *p)
                    .map_err(mls)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Epoch and tree hash, to compare with the hub's view.
    pub fn epoch_and_tree_hash(&self, group_id: &GroupId) -> Option<(u64, Vec<u8>)> {
        self.mls_group(group_id).map(|g| {
            (
                g.epoch().as_u64(),
                g.public_group().group_context().tree_hash().to_vec(),
            )
        })
    }
}

/// Splits a staged commit bundle into `MLSGroupUpdate` and its Welcome.
fn group_update_from(
    bundle: &CommitMessageBundle,
) -> Result<(wire::MLSGroupUpdate, Option<wire::WelcomeMessage>), ClientError> {
    let commit =
        wire::PublicMessage::from_bytes(&bundle.commit().tls_serialize_detached().map_err(mls)?)?;
    let group_info = bundle
        .group_info()
        .ok_or_else(|| ClientError::Mls("commit built without GroupInfo".into()))?;
    let extensions = wire::GroupInfoExtensions::from_bytes(
        &group_info
            .extensions()
            .tls_serialize_detached()
            .map_err(mls)?,
    )?;
    let partial_group_info = wire::PartialGroupInfo {
        group_info_extensions: extensions,
        // `Signature` encodes as `opaque signature<V>`, exactly our `Bytes`.
        signature: wire::Bytes::decode_exact(
            &group_info
                .signature()
                .tls_serialize_detached()
                .map_err(mls)?,
            &wire::Limits::default(),
        )?,
    };
    let welcome = match bundle.to_welcome_msg() {
        Some(w) => Some(wire::WelcomeMessage::from_bytes(
            &w.tls_serialize_detached().map_err(mls)?,
        )?),
        None => None,
    };
    Ok((
        wire::MLSGroupUpdate {
            commit,
            partial_group_info,
        },
        welcome,
    ))
}
