//! What one step of the hub takes and gives: the operator's settings, the
//! request's context, the loaded slot, and the outcome to commit.
//!
//! These types sit below the operations (`ops/`), the commit path and the
//! dispatcher (`hub.rs`), so that every module depends on them and none on
//! the dispatcher.

use mimid_wire::{ClientId, DSRequest, DSResponseBody, GroupId, ProviderDomain, UserId, Wire};
use openmls_rust_crypto::RustCrypto;

use crate::error::HubError;
use crate::signer::Verified;
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

impl Origin {
    /// The provider a request of this origin acts for: a provider for its
    /// own clients, the hub's own clients for the hub's domain. Every
    /// ClientID a request names or introduces (a signer, an external
    /// joiner, a group's creator, a requester of group information) must
    /// belong to it (`docs/protocol.md` 6.1).
    pub fn acts_for<'a>(&'a self, config: &'a HubConfig) -> &'a ProviderDomain {
        match self {
            Origin::Local => &config.domain,
            Origin::Provider(p) => p,
        }
    }
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
    /// The hub's own users' clients, from the provider's client directory,
    /// for the users a `ds_add_users` request adds: every client of such a
    /// user must be added (`docs/protocol.md` 6.3). Loaded on demand: a run
    /// that needs it and finds `None` fails with
    /// [`HubError::NeedsDirectory`](crate::HubError::NeedsDirectory), naming
    /// the users to load.
    pub directory: Option<Directory>,
}

/// Users of the hub's own provider and their clients.
pub type Directory = std::collections::BTreeMap<UserId, std::collections::BTreeSet<ClientId>>;

/// A request, with what every operation needs.
pub(crate) struct Req<'a> {
    pub config: &'a HubConfig,
    pub crypto: &'a RustCrypto,
    pub request: &'a DSRequest,
    pub ctx: &'a Context,
    pub group_id: &'a GroupId,
    /// Told when a committing request's sender is authenticated.
    pub authenticated: &'a (dyn Fn() + Sync),
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
    /// Reserved until `until` for `by`, the provider whose request
    /// reserved it (only it may create the group).
    Reserved {
        until: u64,
        by: ProviderDomain,
    },
    Active(Box<HubGroup>),
}

/// What happens to the stored slot.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing (read-only, or only deliveries to enqueue).
    None,
    /// Reserve the id until the given time, for the provider `by`.
    Reserve { until: u64, by: ProviderDomain },
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

/// An accepted application message, by its epoch and the SHA-256 of its
/// `MLSMessage` bytes. Clients never send the same bytes twice (each
/// message has a generation of its own), so the same bytes again are a
/// retry or a replay: the adapter fans them out only if the group has not
/// got this digest yet, and answers a repeat as it answered the original
/// (`docs/protocol.md` 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppMessage {
    pub epoch: u64,
    pub digest: [u8; 32],
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
    /// The application message this step fans out, to be remembered with
    /// it: the step happens only if the group has not got it yet.
    pub app_message: Option<AppMessage>,
    /// Forget the group's application messages of these epochs: the hub
    /// refuses messages of them from now on anyway. A commit names the
    /// one epoch that leaves the accepted window; the epochs before it
    /// left with earlier commits.
    pub forget_app_messages: Option<std::ops::Range<u64>>,
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
            app_message: None,
            forget_app_messages: None,
        }
    }
}

/// Encodes a value that came from decoded or validated parts.
pub(crate) fn encode<T: Wire>(value: &T) -> Result<Vec<u8>, HubError> {
    value.to_bytes().map_err(crate::error::internal)
}
