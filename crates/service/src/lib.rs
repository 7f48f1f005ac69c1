//! `mimid-service`: the hub's core run against a store.
//!
//! For each request: take the group's lock (one writer per group in this
//! process; the store's version check covers other processes), load the
//! group from a bounded cache or the store, run [`Hub::handle`], commit the
//! step (state, joiner snapshot, the message stored once, one delivery job
//! per destination provider) in one transaction, and only then answer. An
//! application message is remembered by its digest in that transaction: the
//! same message again changes nothing and gets the answer the first got.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

mod ahead;
pub mod guest;
pub mod outbox;
pub mod people;
mod verifier;
pub use verifier::BatchVerifier;

use lru::LruCache;
use mimid_core::{
    Context, Directory, DsEndpoint, Hub, HubError, HubGroup, JoinerSnapshot, Origin, Outcome,
    SignatureCheck, SignerKey, Slot, Verified, Write,
};
use mimid_store::{
    GroupWrite, LocalDelivery, MessageDigest, NewJob, NewMessage, Snapshot, Step, Store,
    StoreError, StoredGroup,
};
use mimid_wire::{ClientId, DSRequest, DSResponseBody, UserId};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand;

/// Counter of application messages a group had accepted already (a relay's
/// retry after a lost answer, or a replay), answered as the first and not
/// fanned out again. A steady rate from one peer is worth a look.
pub const REPEATED: &str = "mimid_repeated_messages_total";

/// Why a request got no hub answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The hub refused the request (a typed protocol error).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// The wire error for this failure.
    pub fn to_ds_error(&self) -> mimid_wire::DSError {
        match self {
            ServiceError::Hub(e) => e.to_ds_error(),
            // The store failed and nothing was acknowledged: try again soon.
            ServiceError::Store(_) => mimid_wire::DSError::unavailable(1),
        }
    }
}

/// Tuning of the service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Groups kept loaded in memory; memory does not grow beyond this many
    /// groups however many are stored.
    pub cache_groups: NonZeroUsize,
    /// Commits at least this large (bytes) are stored ahead of their step,
    /// while the core validates them (`ahead.rs`).
    pub store_ahead_from: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            cache_groups: NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN),
            store_ahead_from: ahead::STORE_AHEAD_FROM,
        }
    }
}

struct Cached {
    version: u64,
    group: HubGroup,
    /// The group's state as stored at `version`: the next step writes only
    /// the pages that differ from it.
    state: Vec<u8>,
}

/// A slot as loaded for a step.
struct Loaded {
    slot: Slot,
    /// Its store version (`None`: absent).
    version: Option<u64>,
    /// Its stored state (empty unless active).
    state: Vec<u8>,
    /// Taken from this process's cache rather than read from the store.
    cached: bool,
}

/// A queued step, and the destinations its delivery jobs are for.
struct QueuedStep {
    pending: mimid_store::Pending,
    destinations: Vec<String>,
}

/// Told the destinations of a step's delivery jobs once the step is
/// durable (the outbox, which then sends them).
pub type JobListener = Arc<dyn Fn(&[String]) + Send + Sync>;

/// How one run of the core on a loaded slot ended.
enum Ran {
    /// Answered; the step (if any) is queued.
    Answered(DSResponseBody, Option<QueuedStep>),
    /// Refused, from a current state.
    Refused(HubError),
    /// The cached state was stale: run again on the stored one.
    Stale,
}

/// The domain a reserved slot's state names: the provider that reserved
/// it. Reservations stored before it was recorded have none.
fn reserver(state: &[u8]) -> Option<mimid_wire::ProviderDomain> {
    std::str::from_utf8(state).ok()?.parse().ok()
}

/// What [`HubService::step`] makes of an outcome.
struct Built {
    /// What to write (`None`: nothing).
    step: Option<Step>,
    /// The group's state as the step leaves it.
    state: Vec<u8>,
    /// A message stored ahead that the step does not refer to.
    unused: Option<[u8; 16]>,
}

/// The hub of one provider, backed by a store.
pub struct HubService<S: Store> {
    hub: Hub,
    store: S,
    rand: RustCrypto,
    cache: Mutex<LruCache<Vec<u8>, Cached>>,
    locks: Mutex<HashMap<Vec<u8>, Weak<tokio::sync::Mutex<()>>>>,
    /// Signature keys of members who signed lately, by group, read without
    /// the group's lock so that their next requests' signatures can be
    /// checked in batches before the step ([`verifier`]). Only a hint: the
    /// step accepts a batch result only if the leaf still has that key.
    signers: Mutex<LruCache<Vec<u8>, HashMap<u32, SignerKey>>>,
    /// `None` if its thread could not be started: each step then checks its
    /// signature itself.
    verifier: Option<Arc<BatchVerifier>>,
    store_ahead_from: usize,
    /// Told of each durable step's delivery destinations.
    job_listener: std::sync::OnceLock<JobListener>,
    /// Requests being handled right now.
    in_flight: InFlight,
}

/// Requests being handled right now by a service. With company, a step's
/// write is left to the store's writer, where concurrent steps share a
/// transaction ([`mimid_store::Pending::via_writer`]); alone, the caller
/// may apply it on its own thread, sparing two thread hand-offs.
#[derive(Clone, Debug, Default)]
pub(crate) struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    /// Counts a request until the guard is dropped.
    pub(crate) fn enter(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlightGuard(self)
    }
}

pub(crate) struct InFlightGuard<'a>(&'a InFlight);

impl InFlightGuard<'_> {
    /// Waits for `pending`, leaving it to the writer if other requests are
    /// being handled too.
    pub(crate) async fn durable(&self, pending: mimid_store::Pending) -> Result<(), StoreError> {
        if (self.0).0.load(std::sync::atomic::Ordering::Relaxed) > 1 {
            pending.via_writer().await
        } else {
            pending.await
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        (self.0)
            .0
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Recipients of a job: ClientIDs, one per line (they contain no newline).
pub fn encode_recipients(recipients: &[mimid_wire::ClientId]) -> Vec<u8> {
    recipients
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// The inverse of [`encode_recipients`].
pub fn decode_recipients(bytes: &[u8]) -> Result<Vec<mimid_wire::ClientId>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    text.split('\n')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e: mimid_wire::IdentifierError| e.0))
        .collect()
}

impl<S: Store> HubService<S> {
    pub fn new(hub: Hub, store: S, config: ServiceConfig) -> Self {
        HubService {
            hub,
            store,
            rand: RustCrypto::default(),
            cache: Mutex::new(LruCache::new(config.cache_groups)),
            locks: Mutex::new(HashMap::new()),
            signers: Mutex::new(LruCache::new(config.cache_groups)),
            verifier: BatchVerifier::start().ok().map(Arc::new),
            store_ahead_from: config.store_ahead_from,
            job_listener: std::sync::OnceLock::new(),
            in_flight: InFlight::default(),
        }
    }

    /// Sets who is told, once a step is durable, the destinations of its
    /// delivery jobs (the outbox). Only the first listener set counts.
    pub fn set_job_listener(&self, listener: JobListener) {
        let _ = self.job_listener.set(listener);
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back (to close it).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Drops a group from the cache (the next request loads it from the
    /// store), e.g. after the store was changed by another tool.
    pub fn evict(&self, group_id: &mimid_wire::GroupId) {
        let _ = self.cache_take(&group_id.to_mls_bytes());
    }

    /// Batches of signatures checked so far, and the signatures in them:
    /// client signatures checked ahead of their steps (requests whose
    /// signer's key was not known yet, and large ones, are checked by their
    /// step instead), and whatever else shares the batches
    /// ([`HubService::batch_verifier`]).
    pub fn signature_batches(&self) -> (u64, u64) {
        self.verifier.as_ref().map_or((0, 0), |v| v.stats())
    }

    /// The batching thread the hub checks client signatures on, for other
    /// signatures to share (the transport's provider signatures). `None`
    /// if it could not be started.
    pub fn batch_verifier(&self) -> Option<Arc<BatchVerifier>> {
        self.verifier.clone()
    }

    /// Upkeep the server runs periodically (once a minute) with the current
    /// time: drops group-id reservations that expired, and joiner snapshots
    /// older than `welcome_retention`. A group's commits prune its own
    /// snapshots, but a group that never commits again would keep them.
    pub async fn maintain(&self, now: u64) -> Result<(), ServiceError> {
        self.store.prune_reservations(now).await?;
        let retention = self.hub.config().welcome_retention;
        self.store
            .prune_snapshots(now.saturating_sub(retention))
            .await?;
        self.store
            .prune_messages(now.saturating_sub(ahead::ORPHAN_AFTER))
            .await?;
        Ok(())
    }

    /// Groups currently loaded in memory.
    pub fn cached_groups(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn random16(&self) -> Result<[u8; 16], ServiceError> {
        self.rand
            .random_array::<16>()
            .map_err(|e| ServiceError::Hub(HubError::Internal(format!("randomness: {e:?}"))))
    }

    /// Checks the request's client signature in a batch with concurrent
    /// requests', if its signer's key is known from an earlier request.
    async fn verify_ahead(&self, group_id: &[u8], request: &DSRequest) -> Option<Verified> {
        let verifier = self.verifier.as_ref()?;
        let index = mimid_core::claimed_signer(request)?;
        let key = *self.signers.lock().ok()?.get(group_id)?.get(&index)?;
        verifier.verify(SignatureCheck::new(request, &key)?).await
    }

    /// Remembers the key of the member who signed an accepted request.
    fn note_signer(&self, group_id: &[u8], group: &HubGroup, request: &DSRequest) {
        let Some(index) = mimid_core::claimed_signer(request) else {
            return;
        };
        let (Some(Ok(key)), Ok(mut signers)) = (group.signer_key(index), self.signers.lock())
        else {
            return;
        };
        match signers.get_mut(group_id) {
            Some(keys) => {
                keys.insert(index, key);
            }
            None => {
                signers.put(group_id.to_vec(), HashMap::from([(index, key)]));
            }
        }
    }

    fn lock_for(&self, group_id: &[u8]) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(lock) = locks.get(group_id).and_then(Weak::upgrade) {
            return lock;
        }
        // Forget locks nobody holds any more, so the map stays small.
        if locks.len() > 1024 {
            locks.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(group_id.to_vec(), Arc::downgrade(&lock));
        lock
    }

    fn cache_take(&self, group_id: &[u8]) -> Option<Cached> {
        self.cache.lock().ok().and_then(|mut c| c.pop(group_id))
    }

    fn cache_put(&self, group_id: Vec<u8>, cached: Cached) {
        if let Ok(mut c) = self.cache.lock() {
            c.put(group_id, cached);
        }
    }

    /// Loads the slot (cache first), its store version and stored state.
    async fn load(&self, group_id: &[u8]) -> Result<Loaded, ServiceError> {
        if let Some(cached) = self.cache_take(group_id) {
            return Ok(Loaded {
                slot: Slot::Active(Box::new(cached.group)),
                version: Some(cached.version),
                state: cached.state,
                cached: true,
            });
        }
        self.load_stored(group_id).await
    }

    /// Loads the slot from the store.
    async fn load_stored(&self, group_id: &[u8]) -> Result<Loaded, ServiceError> {
        let (slot, version, state) = match self.store.load_group(group_id).await? {
            None => (Slot::Empty, None, Vec::new()),
            Some(StoredGroup {
                version,
                state,
                reserved_until: Some(until),
            }) => {
                let by = reserver(&state).unwrap_or_else(|| self.hub.config().domain.clone());
                (Slot::Reserved { until, by }, Some(version), Vec::new())
            }
            Some(StoredGroup {
                version,
                state,
                reserved_until: None,
            }) => (
                Slot::Active(Box::new(HubGroup::from_bytes(&state)?)),
                Some(version),
                state,
            ),
        };
        Ok(Loaded {
            slot,
            version,
            state,
            cached: false,
        })
    }

    /// Whether a group cached at `version` is still the stored one: no
    /// other process sharing the store has written it since. A stored
    /// version below the cached one is this process's own steps, queued
    /// and not yet durable (were another process to write meanwhile, those
    /// steps would fail with `Conflict` and evict the group).
    async fn still_current(
        &self,
        group_id: &[u8],
        version: Option<u64>,
    ) -> Result<bool, ServiceError> {
        let stored = self.store.group_version(group_id).await?;
        Ok(matches!((stored, version), (Some(s), Some(v)) if s <= v))
    }

    /// Handles one DS request from `origin` arriving on `endpoint`.
    ///
    /// The step is queued for the store under the group's lock (so steps of
    /// one group are applied in the order the hub accepted them) and the
    /// answer waits, outside the lock, until it is durable: steps of one
    /// group arriving together share a transaction.
    pub async fn handle(
        &self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        origin: Origin,
    ) -> Result<DSResponseBody, ServiceError> {
        let in_flight = self.in_flight.enter();
        let mut ctx = Context {
            origin,
            now: unix_now(),
            random: self.random16()?,
            verified: None,
            directory: None,
        };
        let target = self.hub.target(endpoint, request, &ctx)?;
        let group_id = target.group_id.to_mls_bytes();
        ctx.verified = self.verify_ahead(&group_id, request).await;
        let lock = self.lock_for(&group_id);
        // A conflict means the state this step was built on did not become
        // durable (an earlier step failed, or another process wrote the
        // group): nothing was acknowledged, so build the step again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (response, pending) = {
                let _writer = lock.lock().await;
                match self
                    .step_locked(endpoint, request, &ctx, &target, &group_id)
                    .await?
                {
                    (response, None) => return Ok(response),
                    (response, Some(pending)) => (response, pending),
                }
            };
            match in_flight.durable(pending.pending).await {
                Ok(()) => {
                    if !pending.destinations.is_empty()
                        && let Some(listener) = self.job_listener.get()
                    {
                        listener(&pending.destinations);
                    }
                    return Ok(response);
                }
                // The group has this application message already: it was
                // fanned out when first accepted, and this step, which
                // changed nothing, gets the answer that one got.
                Err(StoreError::Repeated) => {
                    tracing::debug!("an application message accepted before, not fanned out again");
                    metrics::counter!(REPEATED).increment(1);
                    return Ok(response);
                }
                Err(e) => {
                    // The cache may hold state that never became durable.
                    let _ = self.cache_take(&group_id);
                    match e {
                        StoreError::Conflict if attempts < 3 => continue,
                        e => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Runs the core on the loaded group and queues its step; the cache
    /// then holds the new state (optimistically: it is evicted if the step
    /// fails). Called with the group's lock held.
    async fn step_locked(
        &self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        ctx: &Context,
        target: &mimid_core::Target,
        group_id: &[u8],
    ) -> Result<(DSResponseBody, Option<QueuedStep>), ServiceError> {
        // Read before the group leaves the cache, so that no early return
        // leaves it out.
        let snapshot = match target.snapshot_epoch {
            Some(epoch) => match self.store.load_snapshot(group_id, epoch).await? {
                Some(s) => Some(JoinerSnapshot::from_bytes(&s.data)?),
                None => None,
            },
            None => None,
        };
        let mut loaded = self.load(group_id).await?;
        let mut ctx = std::borrow::Cow::Borrowed(ctx);
        loop {
            match self
                .run(
                    endpoint,
                    request,
                    &ctx,
                    target,
                    group_id,
                    loaded,
                    snapshot.as_ref(),
                )
                .await?
            {
                Ran::Answered(response, pending) => return Ok((response, pending)),
                // Adding users of this provider: with their clients, again.
                Ran::Refused(HubError::NeedsDirectory(users)) if ctx.directory.is_none() => {
                    ctx.to_mut().directory = Some(self.directory(&users).await?);
                    loaded = self.load(group_id).await?;
                }
                Ran::Refused(e) => return Err(e.into()),
                // Another process wrote the group: answer from its state.
                Ran::Stale => loaded = self.load_stored(group_id).await?,
            }
        }
    }

    /// The clients of these users of this provider, from its client
    /// directory (the `clients` table).
    async fn directory(&self, users: &[UserId]) -> Result<Directory, ServiceError> {
        let mut directory = Directory::new();
        for user in users {
            let mut clients = std::collections::BTreeSet::new();
            for client in self.store.clients_of_user(user.as_str()).await? {
                let client = client
                    .parse::<ClientId>()
                    .map_err(|e| HubError::Internal(format!("stored ClientID {client}: {e}")))?;
                clients.insert(client);
            }
            directory.insert(user.clone(), clients);
        }
        Ok(directory)
    }

    /// One run of the core on a loaded slot (see [`HubService::step_locked`]).
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        ctx: &Context,
        target: &mimid_core::Target,
        group_id: &[u8],
        loaded: Loaded,
        snapshot: Option<&JoinerSnapshot>,
    ) -> Result<Ran, ServiceError> {
        let Loaded {
            mut slot,
            version,
            state: stored,
            cached,
        } = loaded;
        let prepared = match (&slot, endpoint) {
            (Slot::Active(group), DsEndpoint::GroupOperation) => ahead::prepare(
                self.store_ahead_from,
                (group_id, &target.group_id, group.epoch(), version),
                request,
                ctx.now,
            ),
            _ => None,
        };
        // A large commit is stored as soon as its sender is authenticated.
        let queue_ahead = || {
            if let Some(prepared) = &prepared {
                prepared.queue(&self.store);
            }
        };
        let result =
            self.hub
                .handle_with(endpoint, request, &mut slot, snapshot, ctx, &queue_ahead);
        let ahead = prepared.and_then(ahead::Prepared::into_queued);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                if let Some(ahead) = ahead {
                    ahead.discard(&self.store).await;
                }
                // An internal error may have changed the group: drop it.
                if matches!(e, HubError::Internal(_)) {
                    return Ok(Ran::Refused(e));
                }
                // A refusal that a cached state gave is answered only if
                // that state is still the stored one.
                if cached && !self.still_current(group_id, version).await? {
                    return Ok(Ran::Stale);
                }
                // The refused request left the group as it was.
                if let (Slot::Active(group), Some(version)) = (slot, version) {
                    self.cache_put(
                        group_id.to_vec(),
                        Cached {
                            version,
                            group: *group,
                            state: stored,
                        },
                    );
                }
                return Ok(Ran::Refused(e));
            }
        };
        // So is a read-only answer (anything that writes is checked by the
        // store's version check instead).
        let read_only = outcome.write == Write::None
            && outcome.deliveries.is_empty()
            && outcome.snapshot.is_none();
        if read_only && cached && !self.still_current(group_id, version).await? {
            if let Some(ahead) = ahead {
                ahead.discard(&self.store).await;
            }
            return Ok(Ran::Stale);
        }
        let next_version = match (&outcome.write, version) {
            (Write::Put(_), v) => Some(v.map_or(1, |v| v + 1)),
            (Write::None, v) => v,
            _ => None,
        };
        let response = outcome.response.clone();
        let ahead = match ahead {
            Some(ahead) => ahead.stored().await,
            None => None,
        };
        let Built {
            step,
            state,
            unused,
        } = self.step(group_id, version, stored, outcome, ctx, ahead)?;
        if let Some(message_id) = unused {
            ahead::discard(&self.store, message_id).await;
        }
        let pending = match step {
            Some(step) => {
                let mut destinations: Vec<String> =
                    step.jobs.iter().map(|j| j.destination.clone()).collect();
                destinations.sort_unstable();
                destinations.dedup();
                Some(QueuedStep {
                    pending: self.store.enqueue(step).await?,
                    destinations,
                })
            }
            None => None,
        };
        if let (Slot::Active(group), Some(version)) = (slot, next_version) {
            if ctx.verified.is_none() {
                self.note_signer(group_id, &group, request);
            }
            self.cache_put(
                group_id.to_vec(),
                Cached {
                    version,
                    group: *group,
                    state,
                },
            );
        }
        Ok(Ran::Answered(response, pending))
    }

    /// The store step of an outcome (`None` when nothing is written), and
    /// the group's state as it leaves it. `stored` is the state at
    /// `version`: a new state is written as the pages that differ from it.
    /// A message stored `ahead` is referred to instead of written, if the
    /// step stores it; else its id comes back, to be discarded.
    fn step(
        &self,
        group_id: &[u8],
        version: Option<u64>,
        stored: Vec<u8>,
        outcome: Outcome,
        ctx: &Context,
        mut ahead: Option<ahead::Stored>,
    ) -> Result<Built, ServiceError> {
        let (write, state) = match outcome.write {
            Write::None => (GroupWrite::Keep, stored),
            // A reservation's state is the domain of its provider.
            Write::Reserve { until, by } => (
                GroupWrite::Put {
                    state: by.as_str().as_bytes().to_vec(),
                    reserved_until: Some(until),
                },
                Vec::new(),
            ),
            // A group's first state is written whole.
            Write::Put(state) if stored.is_empty() => (
                GroupWrite::Put {
                    state: state.clone(),
                    reserved_until: None,
                },
                state,
            ),
            Write::Put(state) => (GroupWrite::patch(&stored, &state), state),
            Write::Delete => (GroupWrite::Delete, Vec::new()),
        };
        if write == GroupWrite::Keep && outcome.deliveries.is_empty() && outcome.snapshot.is_none()
        {
            return Ok(Built {
                step: None,
                state,
                unused: ahead.map(|a| a.message_id),
            });
        }
        // The hub's own clients get their messages in this step's
        // transaction; only other providers need a stored message and a
        // delivery job each.
        let own = &self.hub.config().domain;
        let mut messages = Vec::with_capacity(outcome.messages.len());
        let mut ids = Vec::with_capacity(outcome.messages.len());
        for (index, body) in outcome.messages.iter().enumerate() {
            let Some(first) = outcome
                .deliveries
                .iter()
                .find(|d| d.message == index && &d.destination != own)
            else {
                continue;
            };
            // Stored once, in the form the delivery worker sends (its
            // recipients come from each job).
            let stored =
                mimid_wire::encode_deliver_message(&first.group_id, first.epoch, &[], body)
                    .map_err(|e| HubError::Internal(e.to_string()))?;
            if let Some(a) = ahead.take_if(|a| a.body == stored) {
                ids.push((index, a.message_id));
                continue;
            }
            let message_id = new_message_id();
            messages.push(NewMessage {
                message_id,
                body: stored,
            });
            ids.push((index, message_id));
        }
        let mut jobs = Vec::new();
        let mut local = Vec::new();
        for d in &outcome.deliveries {
            let id = ids.iter().find(|(i, _)| *i == d.message).map(|(_, id)| *id);
            if &d.destination != own {
                if let Some(message_id) = id {
                    jobs.push(NewJob {
                        destination: d.destination.to_string(),
                        message_id,
                        recipients: encode_recipients(&d.recipients),
                    });
                }
                continue;
            }
            let Some(body) = outcome.messages.get(d.message) else {
                return Err(HubError::Internal("a delivery of no message".into()).into());
            };
            local.push(LocalDelivery {
                hub: own.to_string(),
                message_id: id.unwrap_or_else(new_message_id),
                group_id: d.group_id.to_mls_bytes(),
                epoch: d.epoch,
                message: body.clone(),
                recipients: d.recipients.iter().map(|c| c.as_str().to_owned()).collect(),
            });
        }
        let snapshot = match &outcome.snapshot {
            Some(s) => Some(Snapshot {
                epoch: s.epoch,
                created_at: ctx.now,
                data: s.to_bytes()?,
            }),
            None => None,
        };
        let step = Step {
            group_id: group_id.to_vec(),
            expected_version: version,
            write,
            snapshot,
            prune_snapshots_before: outcome.prune_snapshots_before,
            messages,
            jobs,
            local,
            remember: outcome.app_message.map(|m| MessageDigest {
                epoch: m.epoch,
                digest: m.digest,
            }),
            forget_digests: outcome.forget_app_messages,
            now: ctx.now,
        };
        Ok(Built {
            step: Some(step),
            state,
            unused: ahead.map(|a| a.message_id),
        })
    }
}

/// A fresh message id, time-ordered (UUIDv7): stored rows and their indexes
/// grow at the end instead of at random places.
fn new_message_id() -> [u8; 16] {
    uuid::Uuid::now_v7().into_bytes()
}

impl<S: Store> HubService<S> {
    /// Epoch and tree hash of a hosted group (loaded like any request
    /// would), for operators and tests.
    pub async fn group_epoch(
        &self,
        group_id: &mimid_wire::GroupId,
    ) -> Result<Option<(u64, Vec<u8>)>, ServiceError> {
        let group_id = group_id.to_mls_bytes();
        let lock = self.lock_for(&group_id);
        let _writer = lock.lock().await;
        let Loaded {
            slot,
            version,
            state,
            ..
        } = self.load(&group_id).await?;
        Ok(match (slot, version) {
            (Slot::Active(group), Some(version)) => {
                let epoch = (group.epoch(), group.tree_hash().to_vec());
                self.cache_put(
                    group_id,
                    Cached {
                        version,
                        group: *group,
                        state,
                    },
                );
                Some(epoch)
            }
            _ => None,
        })
    }
}
