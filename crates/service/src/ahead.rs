//! Large commits stored ahead of their step.
//!
//! Storing a commit of a 1,000-member group (83 KB) costs a quarter of a
//! millisecond of writes on the machines we measure on, plus their sync with
//! `Durability::PowerLoss`; inside the step's transaction that time adds to
//! the answer. So a large commit for the group's current epoch is stored as
//! soon as the hub has authenticated its sender (client signature and
//! origin; a stranger's forged commit costs no write and no sync), in a
//! transaction of its own that the store's writer applies while OpenMLS
//! validates the commit (on another core), and the step only refers to it.
//! A message stored ahead is no delivery: nothing reads a message no job
//! refers to. If the commit is refused, or the step
//! needs it in another form, the message is discarded; if the process stops
//! in between (or the step fails in the store),
//! [`crate::HubService::maintain`] drops it later.

use std::sync::Mutex;

use mimid_store::{GroupWrite, NewMessage, Pending, Step, Store};
use mimid_wire::{DSRequest, DSRequestBody, GroupId, PublicMessage};
use openmls::prelude::MlsMessageBodyIn;

/// By default commits at least this large are stored ahead: below it, the
/// transaction of its own costs more than writing the commit with the step.
pub const STORE_AHEAD_FROM: usize = 16 * 1024;

/// Messages stored ahead whose step never came are dropped after this long
/// (seconds); a step follows its message within milliseconds.
pub(crate) const ORPHAN_AFTER: u64 = 600;

/// A commit being stored ahead of its step.
pub(crate) struct Ahead {
    message_id: [u8; 16],
    /// The stored form (`encode_deliver_message`).
    body: Vec<u8>,
    pending: Pending,
}

/// A commit stored ahead, for the step to refer to.
pub(crate) struct Stored {
    pub message_id: [u8; 16],
    pub body: Vec<u8>,
}

/// The commit a group operation carries.
fn commit_of(request: &DSRequest) -> Option<&PublicMessage> {
    let update = match &request.request_body {
        DSRequestBody::DeleteGroup(r) => &r.group_update,
        DSRequestBody::AddUsers(r) => &r.group_update,
        DSRequestBody::RemoveUsers(r) => &r.group_update,
        DSRequestBody::AddClients(r) => &r.group_update,
        DSRequestBody::RemoveClients(r) => &r.group_update,
        DSRequestBody::UpdateClient(r) => &r.group_update,
        DSRequestBody::ExternalJoin(r) => &r.group_update,
        _ => return None,
    };
    Some(&update.commit)
}

/// A commit to be stored ahead once its sender is authenticated.
pub(crate) struct Prepared {
    message_id: [u8; 16],
    body: Vec<u8>,
    step: Mutex<Option<Step>>,
    queued: Mutex<Option<Pending>>,
}

/// Prepares the request's commit for storage, if it is at least `from`
/// bytes and for the group's current `epoch` (anything else the core
/// refuses, or is cheap to write with the step). The group is `group_id`
/// (stored form and wire form) at store `version`. Nothing is written
/// until [`Prepared::queue`]: a stranger's commit costs no write.
pub(crate) fn prepare(
    from: usize,
    (group_id, wire_group_id, epoch, version): (&[u8], &GroupId, u64, Option<u64>),
    request: &DSRequest,
    now: u64,
) -> Option<Prepared> {
    let commit = commit_of(request)?;
    let MlsMessageBodyIn::PublicMessage(message) = commit.parsed() else {
        return None;
    };
    if commit.as_bytes().len() < from || message.epoch().as_u64() != epoch {
        return None;
    }
    // The form the step stores a commit in (its deliveries are for the
    // epoch it was sent in).
    let body =
        mimid_wire::encode_deliver_message(wire_group_id, epoch, &[], commit.as_bytes()).ok()?;
    let message_id = uuid::Uuid::now_v7().into_bytes();
    let step = Step {
        group_id: group_id.to_vec(),
        expected_version: version,
        write: GroupWrite::Keep,
        snapshot: None,
        prune_snapshots_before: None,
        messages: vec![NewMessage {
            message_id,
            body: body.clone(),
        }],
        jobs: Vec::new(),
        local: Vec::new(),
        remember: None,
        forget_digests: None,
        now,
    };
    Some(Prepared {
        message_id,
        body,
        step: Mutex::new(Some(step)),
        queued: Mutex::new(None),
    })
}

impl Prepared {
    /// Queues the commit for the store's writer. The core calls this (on
    /// whichever thread checked the client signature) once the sender is
    /// authenticated, while OpenMLS may still be validating the commit.
    pub(crate) fn queue<S: Store>(&self, store: &S) {
        let Some(step) = self.step.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        if let Ok(pending) = store.enqueue_now(step) {
            pending.start();
            if let Ok(mut queued) = self.queued.lock() {
                *queued = Some(pending);
            }
        }
    }

    /// The commit being stored, if [`Prepared::queue`] queued it.
    pub(crate) fn into_queued(self) -> Option<Ahead> {
        let pending = self.queued.into_inner().ok()??;
        Some(Ahead {
            message_id: self.message_id,
            body: self.body,
            pending,
        })
    }
}

impl Ahead {
    /// Waits until the message is stored; `None` if it could not be (the
    /// step then carries it itself).
    pub(crate) async fn stored(self) -> Option<Stored> {
        self.pending.await.ok()?;
        Some(Stored {
            message_id: self.message_id,
            body: self.body,
        })
    }

    /// The step will not happen: drop the message (without waiting).
    pub(crate) async fn discard<S: Store>(self, store: &S) {
        discard(store, self.message_id).await;
    }
}

/// Drops a message stored ahead (without waiting).
pub(crate) async fn discard<S: Store>(store: &S, message_id: [u8; 16]) {
    if let Ok(pending) = store.discard_messages(vec![message_id]).await {
        pending.start();
    }
}
