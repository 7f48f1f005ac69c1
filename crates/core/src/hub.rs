//! The hub: a deterministic function of (stored group, verified request,
//! time, randomness) to (new group state, response, delivery jobs).
//!
//! No sockets, no clock, no database: the adapter loads what
//! [`Hub::target`] names, calls [`Hub::handle`], and commits the
//! [`Outcome`] atomically before it answers.

use mimid_wire::{
    ClientId, DSRequest, DSRequestBody, DSResponseBody, GroupId, PROTOCOL_VERSION, ProviderDomain,
    Wire,
};
use openmls::prelude::MlsMessageBodyIn;
use openmls_rust_crypto::RustCrypto;

use crate::auth::Verified;
use crate::error::HubError;
use crate::ops;
use crate::state::{HubGroup, JoinerSnapshot};

/// Operator settings of the hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// This provider's domain: the hub of every group whose id names it.
    pub domain: ProviderDomain,
    /// How long joiner snapshots are kept, in seconds (G8).
    pub welcome_retention: u64,
    /// Past epochs an application message may still use (G16; default 0).
    pub app_message_past_epochs: u64,
    /// How long a requested group id stays reserved, in seconds.
    pub reservation_lifetime: u64,
    /// Whether other providers' clients may request ids and create groups.
    pub allow_foreign_groups: bool,
}

impl HubConfig {
    pub fn new(domain: ProviderDomain) -> Self {
        HubConfig {
            domain,
            welcome_retention: 30 * 24 * 3600,
            app_message_past_epochs: 0,
            reservation_lifetime: 3600,
            allow_foreign_groups: false,
        }
    }
}

/// The DS endpoint a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsEndpoint {
    GroupOperation,
    WelcomeInformation,
    ExternalCommitInformation,
}

/// Who sent the request: one of the hub's own clients (client API) or
/// another provider whose signature the transport verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Local,
    Provider(ProviderDomain),
}

/// Everything outside the request that a step depends on.
#[derive(Clone, Debug)]
pub struct Context {
    pub origin: Origin,
    /// Seconds since the Unix epoch.
    pub now: u64,
    /// Fresh randomness (used for new group ids).
    pub random: [u8; 16],
    /// The request's client signature, if it was already found valid in a
    /// batch ([`crate::verify_batch`]).
    pub verified: Option<Verified>,
}

/// What the adapter must load before calling [`Hub::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub group_id: GroupId,
    /// The joiner snapshot of this epoch is needed too.
    pub snapshot_epoch: Option<u64>,
}

/// The stored slot of the target group.
pub enum Slot {
    Empty,
    Reserved { until: u64 },
    Active(Box<HubGroup>),
}

/// What happens to the stored slot.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing (read-only, or only deliveries to enqueue).
    None,
    /// Reserve the id until the given time.
    Reserve { until: u64 },
    /// Store the group's new state (the `HubGroup` in the slot was updated).
    Put(Vec<u8>),
    /// Delete the group.
    Delete,
}

/// Whether a delivery is a group message or a Welcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryKind {
    Message,
    Welcome,
}

/// One message for the recipients on one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub destination: ProviderDomain,
    pub kind: DeliveryKind,
    pub group_id: GroupId,
    pub epoch: u64,
    pub recipients: Vec<ClientId>,
    /// Index into [`Outcome::messages`]: the message is stored once.
    pub message: usize,
}

/// The result of one accepted step.
#[derive(Debug)]
pub struct Outcome {
    pub response: DSResponseBody,
    pub write: Write,
    pub snapshot: Option<JoinerSnapshot>,
    /// Drop snapshots created before this time.
    pub prune_snapshots_before: Option<u64>,
    /// Distinct message bodies (`MLSMessage` bytes) the deliveries refer to.
    pub messages: Vec<Vec<u8>>,
    pub deliveries: Vec<Delivery>,
}

impl Outcome {
    pub(crate) fn reply(response: DSResponseBody) -> Self {
        Outcome {
            response,
            write: Write::None,
            snapshot: None,
            prune_snapshots_before: None,
            messages: Vec::new(),
            deliveries: Vec::new(),
        }
    }
}

/// The hub of one provider.
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) crypto: RustCrypto,
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        Hub {
            config,
            crypto: RustCrypto::default(),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Checks the request against the endpoint and names the group (and
    /// snapshot) to load. Fails before any state is touched.
    pub fn target(
        &self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        ctx: &Context,
    ) -> Result<Target, HubError> {
        if request.version != PROTOCOL_VERSION {
            return Err(HubError::UnsupportedVersion(request.version));
        }
        let body = &request.request_body;
        let expected = match body {
            DSRequestBody::WelcomeInformation(_) => DsEndpoint::WelcomeInformation,
            DSRequestBody::ExternalCommitInformation(_) => DsEndpoint::ExternalCommitInformation,
            _ => DsEndpoint::GroupOperation,
        };
        if expected != endpoint {
            return Err(HubError::WrongEndpoint(body.name()));
        }
        let mut snapshot_epoch = None;
        let group_id = match body {
            DSRequestBody::RequestGroupId => GroupId {
                hub_domain: self.config.domain.clone(),
                local_id: ctx.random,
            },
            DSRequestBody::CreateGroup(c) => c.group_id.0.clone(),
            DSRequestBody::WelcomeInformation(w) => {
                snapshot_epoch = Some(w.epoch);
                w.group_id.0.clone()
            }
            DSRequestBody::ExternalCommitInformation(e) => e.group_id.0.clone(),
            DSRequestBody::SendMessage(m) => group_id_of(m.application_message.parsed())?,
            DSRequestBody::SelfRemoveClient(p) => group_id_of(p.proposal.parsed())?,
            DSRequestBody::DeleteGroup(r) => group_id_of(r.group_update.commit.parsed())?,
            DSRequestBody::AddUsers(r) => group_id_of(r.group_update.commit.parsed())?,
            DSRequestBody::RemoveUsers(r) => group_id_of(r.group_update.commit.parsed())?,
            DSRequestBody::AddClients(r) => group_id_of(r.group_update.commit.parsed())?,
            DSRequestBody::RemoveClients(r) => group_id_of(r.group_update.commit.parsed())?,
            DSRequestBody::UpdateClient(r) => group_id_of(r.group_update.commit.parsed())?,
            DSRequestBody::ExternalJoin(r) => group_id_of(r.group_update.commit.parsed())?,
            DSRequestBody::ReInitializeGroup(r) => group_id_of(r.commit.commit.parsed())?,
        };
        if group_id.hub_domain != self.config.domain {
            return Err(HubError::WrongRecipient(format!(
                "group is hosted by {}, this is {}",
                group_id.hub_domain, self.config.domain
            )));
        }
        Ok(Target {
            group_id,
            snapshot_epoch,
        })
    }

    /// Runs one request against the loaded slot. On error nothing in `slot`
    /// has changed. On success the slot's group holds the new state, which
    /// `Outcome::write` also carries serialized.
    pub fn handle(
        &self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        slot: &mut Slot,
        snapshot: Option<&JoinerSnapshot>,
        ctx: &Context,
    ) -> Result<Outcome, HubError> {
        let target = self.target(endpoint, request, ctx)?;
        let body = &request.request_body;
        match (body, slot) {
            (DSRequestBody::RequestGroupId, slot) => {
                ops::request_group_id::handle(self, &target, slot, ctx)
            }
            (DSRequestBody::CreateGroup(c), slot) => {
                ops::create_group::handle(self, request, c, slot, ctx)
            }
            (_, Slot::Empty | Slot::Reserved { .. }) => Err(HubError::UnknownGroup),
            (_, Slot::Active(group)) => {
                let group: &mut HubGroup = group;
                let req = ops::Req {
                    hub: self,
                    request,
                    ctx,
                    group_id: &target.group_id,
                };
                match body {
                    DSRequestBody::SendMessage(m) => ops::send_message::handle(&req, group, m),
                    DSRequestBody::SelfRemoveClient(p) => {
                        ops::self_remove_client::handle(&req, group, p)
                    }
                    DSRequestBody::DeleteGroup(r) => {
                        ops::delete_group::handle(&req, group, &r.group_update)
                    }
                    DSRequestBody::AddUsers(r) => {
                        ops::add_users::handle(&req, group, &r.group_update, &r.welcome_messages)
                    }
                    DSRequestBody::AddClients(r) => {
                        ops::add_clients::handle(&req, group, &r.group_update, &r.welcome_messages)
                    }
                    DSRequestBody::RemoveUsers(r) => {
                        ops::remove_users::handle(&req, group, &r.group_update)
                    }
                    DSRequestBody::RemoveClients(r) => {
                        ops::remove_clients::handle(&req, group, &r.group_update)
                    }
                    DSRequestBody::UpdateClient(r) => {
                        ops::update_client::handle(&req, group, &r.group_update)
                    }
                    DSRequestBody::ExternalJoin(r) => {
                        ops::external_join::handle(&req, group, &r.group_update)
                    }
                    DSRequestBody::ReInitializeGroup(_) => ops::re_initialize_group::handle(),
                    DSRequestBody::WelcomeInformation(w) => {
                        ops::welcome_information::handle(&req, group, w, snapshot)
                    }
                    DSRequestBody::ExternalCommitInformation(e) => {
                        ops::external_commit_information::handle(&req, group, e)
                    }
                    DSRequestBody::RequestGroupId | DSRequestBody::CreateGroup(_) => {
                        Err(HubError::Internal("dispatched above".into()))
                    }
                }
            }
        }
    }
}

/// The group id inside an MLS message, as a MIMI `GroupId`.
fn group_id_of(message: &MlsMessageBodyIn) -> Result<GroupId, HubError> {
    let bytes = match message {
        MlsMessageBodyIn::PublicMessage(m) => m.group_id().as_slice(),
        MlsMessageBodyIn::PrivateMessage(m) => m.group_id().as_slice(),
        _ => return Err(HubError::InvalidMls("not a protocol message".into())),
    };
    GroupId::from_mls_bytes(bytes)
        .map_err(|e| HubError::Malformed(format!("MLS group_id is not a MIMI GroupId: {e}")))
}

/// Encodes a value that came from decoded or validated parts.
pub(crate) fn encode<T: Wire>(value: &T) -> Result<Vec<u8>, HubError> {
    value.to_bytes().map_err(crate::error::internal)
}
