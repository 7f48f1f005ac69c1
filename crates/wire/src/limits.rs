//! Receiver-configurable bounds on decoded sizes (`docs/protocol.md` 1.1).

use serde::{Deserialize, Serialize};

/// Bounds applied while decoding. Every vector in the wire format is bounded
/// by one of these, so a peer cannot make the decoder allocate more than the
/// operator allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest single `<V>` vector, in bytes.
    pub max_vector_bytes: usize,
    /// Recipients in one `DeliverMessage`.
    pub max_recipients: usize,
    /// Messages in one `deliver_messages` request. Senders send at most
    /// [`MAX_BATCH`]; a receiver that allows fewer refuses larger batches
    /// (400), and mimid's outbox then sends that provider's messages one
    /// at a time.
    pub max_batch: usize,
    /// Welcome messages in one add operation.
    pub max_welcomes: usize,
    /// KeyPackages in one key-package response.
    pub max_key_packages: usize,
    /// Clients named in one `GroupKeyPackageRequest`.
    pub max_clients: usize,
    /// Keys in one `VerificationKeyResponse`.
    pub max_keys: usize,
    /// Versions listed in an `unsupported_version` error.
    pub max_versions: usize,
    /// `DSError.detail`, in bytes.
    pub max_error_detail: usize,
    /// `MLSGroupUpdate.group_info_extensions`, in bytes (its length prefix
    /// included): the hub keeps them in the group's state and in every
    /// joiner snapshot, so one commit must not grow both by megabytes.
    pub max_group_info_extensions: usize,
}

/// Default bound of a commit's GroupInfo extensions: far above what a
/// group needs (the hub serves the ratchet tree itself, so no extension
/// carries it), far below the body limit.
pub const DEFAULT_GROUP_INFO_EXTENSIONS: usize = 64 * 1024;

/// Messages a sender puts in one `deliver_messages` request, at most; the
/// default of [`Limits::max_batch`].
pub const MAX_BATCH: usize = 64;

/// Default HTTP body limit; also the default bound of one vector.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_vector_bytes: DEFAULT_BODY_LIMIT,
            max_recipients: 10_000,
            max_batch: MAX_BATCH,
            max_welcomes: 1_000,
            max_key_packages: 256,
            max_clients: 256,
            max_keys: 16,
            max_versions: 64,
            max_error_detail: 1_024,
            max_group_info_extensions: DEFAULT_GROUP_INFO_EXTENSIONS,
        }
    }
}
