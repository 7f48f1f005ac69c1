//! The hub: a deterministic function of (stored group, verified request,
//! time, randomness) to (new group state, response, delivery jobs).
//!
//! No sockets, no clock, no database: the adapter loads what
//! [`Hub::target`] names, calls [`Hub::handle`], and commits the
//! [`Outcome`] atomically before it answers.

use mimid_wire::{DSAuthData, DSRequest, DSRequestBody, GroupId, PROTOCOL_VERSION};
use openmls::prelude::MlsMessageBodyIn;
use openmls_rust_crypto::RustCrypto;

use crate::error::HubError;
use crate::ops;
use crate::state::{HubGroup, JoinerSnapshot};
use crate::step::{Context, DsEndpoint, HubConfig, Outcome, Slot, Target};

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
        check_auth_type(request)?;
        let snapshot_epoch = match body {
            DSRequestBody::WelcomeInformation(w) => Some(w.epoch),
            _ => None,
        };
        let group_id = match named_group(body)? {
            Some(group_id) => group_id,
            None => GroupId {
                hub_domain: self.config.domain.clone(),
                local_id: ctx.random,
            },
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
        self.handle_with(endpoint, request, slot, snapshot, ctx, &|| {})
    }

    /// [`Hub::handle`], calling `authenticated` (at most once, from any
    /// thread) as soon as a member's commit is known to come from its
    /// sender: client signature and origin checked, OpenMLS perhaps still
    /// validating it. An adapter starts there what it must not do for a
    /// stranger's request (storing a large commit ahead of its step). Not
    /// called for external joins, whose signer is known only from the
    /// validated commit.
    pub fn handle_with(
        &self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        slot: &mut Slot,
        snapshot: Option<&JoinerSnapshot>,
        ctx: &Context,
        authenticated: &(dyn Fn() + Sync),
    ) -> Result<Outcome, HubError> {
        let target = self.target(endpoint, request, ctx)?;
        let body = &request.request_body;
        let req = crate::step::Req {
            config: &self.config,
            crypto: &self.crypto,
            request,
            ctx,
            group_id: &target.group_id,
            authenticated,
        };
        match (body, slot) {
            (DSRequestBody::RequestGroupId, slot) => ops::request_group_id::handle(&req, slot),
            (DSRequestBody::CreateGroup(c), slot) => ops::create_group::handle(&req, c, slot),
            (_, Slot::Empty | Slot::Reserved { .. }) => Err(HubError::UnknownGroup),
            (_, Slot::Active(group)) => {
                let group: &mut HubGroup = group;
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

/// The request's `auth_type` is the one its operation takes
/// (`docs/protocol.md` 5.3): a missing client signature is an
/// authentication failure, a signature on an anonymous operation a
/// malformed request.
fn check_auth_type(request: &DSRequest) -> Result<(), HubError> {
    let anonymous = matches!(
        request.request_body,
        DSRequestBody::RequestGroupId | DSRequestBody::ExternalCommitInformation(_)
    );
    match (&request.authentication_data, anonymous) {
        (DSAuthData::Anonymous, true) | (DSAuthData::ClientSignature(_), false) => Ok(()),
        (DSAuthData::Anonymous, false) => Err(HubError::ClientSignature(format!(
            "{} needs a client signature",
            request.request_body.name()
        ))),
        (DSAuthData::ClientSignature(_), true) => Err(HubError::Malformed(format!(
            "{} is anonymous: auth_type must be anonymous",
            request.request_body.name()
        ))),
    }
}

/// The group a DS request names, from its body or its embedded MLS
/// message; `None` for `ds_request_group_id`, which asks a hub for a new
/// one. A provider relays its clients' requests to the hub named here (its
/// own hub for a new group id).
pub fn named_group(body: &DSRequestBody) -> Result<Option<GroupId>, HubError> {
    Ok(Some(match body {
        DSRequestBody::RequestGroupId => return Ok(None),
        DSRequestBody::CreateGroup(c) => c.group_id.0.clone(),
        DSRequestBody::WelcomeInformation(w) => w.group_id.0.clone(),
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
    }))
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
