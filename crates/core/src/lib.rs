//! `mimid-core`: the hub of MIMI transport profile 1, sans-IO.
//!
//! [`Hub::handle`] is a deterministic function of the stored group, the
//! decoded request, the time and fresh randomness; it returns the response,
//! the new state and the delivery jobs, which the caller commits atomically
//! (`mimid-store`) before it answers. Validation uses OpenMLS' public
//! (non-member) group view. [`guest`] is the other side: what a provider
//! checks and queues when a hub delivers a message for its clients.

mod auth;
pub mod binding;
mod commit;
pub mod error;
mod fanout;
pub mod guest;
pub mod hub;
mod ops;
pub mod people;
mod signer;
pub mod state;
pub mod step;

pub use auth::claimed_signer;
pub use error::HubError;
pub use hub::{Hub, named_group};
pub use signer::{Ed25519Check, SignatureCheck, SignerKey, Verified, verify_batch, verify_each};
pub use state::{AddedClient, HubGroup, JoinerSnapshot, MemberInfo};
pub use step::{
    AppMessage, Context, Delivery, DeliveryKind, Directory, DsEndpoint, HubConfig, Origin, Outcome,
    Slot, Target, Write,
};
