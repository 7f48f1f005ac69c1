//! The outbox (`docs/protocol.md` 6.4): the delivery jobs a hub's steps
//! commit are sent by one worker per destination provider, oldest first,
//! in lanes: a group's jobs one request at a time, so that a provider
//! receives a group's messages in hub order, and up to `lanes` groups side
//! by side. What a group has waiting goes in one request (`deliver_messages`,
//! up to 64 messages), so a busy group is not held to one message per round
//! trip. A failing destination backs off alone (randomised
//! exponential backoff, at least its `Retry-After`); a job its destination
//! refuses for good, or one still undelivered after `delivery_expiry`, goes
//! to the dead letters with the reason, so one poisoned message cannot
//! block a queue. Nothing is dropped silently. [`Outbox::stop`] lets the
//! sends in flight finish and records their outcome before the workers
//! end: a job is delivered and completed, or still pending, never lost
//! between the two.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use mimid_store::{Job, Store};
use mimid_wire::{
    BatchedMessage, DeliverMessage, DeliverMessages, GroupIdField, Limits, MAX_BATCH, MessageId,
    ProviderDomain, QueueingServiceOk, QueueingServicePayload, QueueingServiceRequest, Reader,
    Wire,
};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::{HubService, decode_recipients};

/// How a destination answered one delivery.
#[derive(Debug)]
pub enum Sent {
    /// Accepted (a repeat of an accepted delivery is accepted too).
    Delivered(QueueingServiceOk),
    /// Refused for good: retrying the same request cannot succeed (HTTP
    /// 4xx other than 408, 421 and 429). The job goes to the dead letters.
    Refused(String),
    /// Not delivered this time (unreachable, 5xx, 408, 421, 429): try
    /// again, not before `after` if the destination said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
}

impl Sent {
    /// How an answer with HTTP `status` is taken: 4xx other than 408
    /// (timeout), 421 (misdirected: discovery may be stale) and 429 (rate
    /// limited) refuses for good; anything else is retried.
    pub fn for_status(status: u16, reason: String, retry_after: Option<Duration>) -> Sent {
        if (400..500).contains(&status) && !matches!(status, 408 | 421 | 429) {
            return Sent::Refused(reason);
        }
        Sent::Retry {
            after: retry_after,
            reason,
        }
    }

    /// [`Sent::for_status`] for a refusal given as a `DSError` (by a
    /// destination reached without HTTP).
    pub fn for_error(error: &mimid_wire::DSError) -> Sent {
        let retry_after = match &error.detail {
            mimid_wire::ErrorDetail::RetryAfter(seconds) => {
                Some(Duration::from_secs(u64::from(*seconds)))
            }
            _ => None,
        };
        Sent::for_status(error.code.http_status(), error.to_string(), retry_after)
    }
}

/// What carries a delivery to its destination: the HTTPS client for other
/// providers, the provider's own guest side for its own clients.
pub trait Courier: Send + Sync + 'static {
    fn send(
        &self,
        destination: &ProviderDomain,
        request: &QueueingServiceRequest,
    ) -> impl Future<Output = Sent> + Send;
}

/// Tuning of the outbox.
#[derive(Clone)]
pub struct OutboxConfig {
    /// The sending provider (the hub's domain).
    pub domain: ProviderDomain,
    /// First retry delay; doubles with every failure.
    pub backoff_start: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// A job undelivered this long after it was committed is dead.
    pub delivery_expiry: Duration,
    /// How often the outbox looks for jobs nobody woke it for (jobs
    /// committed before a restart, by another process, or in a race).
    pub rescan: Duration,
    /// Groups whose jobs are sent side by side to one destination (each
    /// group's in order, one at a time); at least 1.
    pub lanes: usize,
    /// Seconds since the Unix epoch (a clock tests can drive).
    pub now: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// This outbox's name in the destinations' leases
    /// ([`Store::lease_destination`]): of several processes sharing a
    /// store, only a lease's holder sends its destination's jobs. Keep it
    /// the same across restarts of one process (e.g. its listen address),
    /// so that a process started again takes its leases back at once
    /// instead of waiting for them to run out.
    pub owner: String,
}

impl OutboxConfig {
    pub fn new(domain: ProviderDomain) -> Self {
        OutboxConfig {
            domain,
            backoff_start: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            delivery_expiry: Duration::from_secs(7 * 24 * 3600),
            rescan: Duration::from_secs(5),
            lanes: 8,
            now: Arc::new(crate::unix_now),
            owner: uuid::Uuid::now_v7().to_string(),
        }
    }
}

/// A destination's worker, as the outbox tracks it.
struct Worker {
    wake: Arc<Notify>,
    /// Set when the outbox woke the worker: it must look again before it
    /// may stop (checked under the outbox's lock, so no wake is lost).
    dirty: bool,
}

/// The outbox of one provider.
pub struct Outbox<S: Store, C: Courier> {
    /// The hub whose jobs these are (and whose store holds them).
    hub: Arc<HubService<S>>,
    courier: Arc<C>,
    config: OutboxConfig,
    workers: Mutex<HashMap<String, Worker>>,
    /// `true` once [`Outbox::stop`] was called.
    stop: tokio::sync::watch::Sender<bool>,
    /// Notified whenever a worker ends.
    ended: Notify,
}

/// Dead letters made since the process started, by `destination` (a
/// metric; the store's count is `mimid_outbox_dead_letters`).
pub const DEAD_LETTERED: &str = "mimid_outbox_dead_lettered_total";
/// Delivery attempts, by `destination` and `outcome` (`delivered`,
/// `retry`, `refused`; a batch counts once).
pub const ATTEMPTS: &str = "mimid_outbox_attempts_total";

/// Jobs a worker reads at a time.
const BATCH: usize = 64;

/// Jobs a worker holds at most (read, not yet settled): a few hundred
/// kilobytes per destination.
const HELD: usize = 256;

/// Jobs of one group a worker always takes; beyond these, only while the
/// worker holds fewer than `HELD - BATCH` jobs in all. The rest of the
/// group's jobs are left unread, and read again by group once the lane has
/// sent what it holds, so that groups whose deliveries keep failing cannot
/// fill the hold and stop the reads for the others (room for one more read
/// is always left), while a lone busy group is read once, in order.
const PER_LANE: usize = 64;

/// Bytes of stored messages one `deliver_messages` request carries, at most
/// (a batch always takes its first message): far below any sane body limit.
const BATCH_BYTES: usize = 512 * 1024;

/// How long a destination that refused a batch gets its messages one at a
/// time (it may not take batches, or one of the messages was bad: the
/// messages are sent again one by one, so that only a bad one is refused).
const UNBATCHED: u64 = 600;

/// Delivered jobs completed in one store write, at most.
const COMPLETE: usize = 32;

/// A worker with nothing to send stops after this long.
const IDLE: Duration = Duration::from_secs(30);

/// How long a destination's lease runs; the worker renews it once half of
/// it is left. A process that dies holding one delays that destination's
/// jobs (committed by other processes) by at most this.
const LEASE: u64 = 30;

impl<S: Store, C: Courier> Outbox<S, C> {
    /// An outbox for `hub`'s jobs, which it is told of as they become
    /// durable (it sets itself as the hub's job listener).
    pub fn new(hub: Arc<HubService<S>>, courier: Arc<C>, config: OutboxConfig) -> Arc<Self> {
        let outbox = Arc::new(Outbox {
            hub: hub.clone(),
            courier,
            config,
            workers: Mutex::new(HashMap::new()),
            stop: tokio::sync::watch::Sender::new(false),
            ended: Notify::new(),
        });
        let weak = Arc::downgrade(&outbox);
        hub.set_job_listener(Arc::new(move |destinations: &[String]| {
            if let Some(outbox) = weak.upgrade() {
                for destination in destinations {
                    outbox.wake(destination.clone());
                }
            }
        }));
        outbox
    }

    /// Runs the outbox until the task is dropped: every `rescan` it starts
    /// or wakes a worker for each destination with jobs, for jobs nobody
    /// told it of (committed before a restart, or by another process).
    pub async fn run(self: Arc<Self>) {
        while !self.stopping() {
            match self.hub.store().job_destinations().await {
                Ok(destinations) => {
                    for destination in destinations {
                        self.wake(destination);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "outbox: cannot list destinations"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.rescan) => {}
                () = self.stopped() => {}
            }
        }
    }

    /// Stops the outbox: no worker starts and no job is read or sent any
    /// more; the sends in flight finish (a failed one is not retried), the
    /// delivered jobs are completed, and then the workers end. Returns once
    /// they all have; bound the wait with a timeout (a send in flight takes
    /// up to the client's request timeout).
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if lock(&self.workers).is_empty() {
                return;
            }
            ended.await;
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once [`Outbox::stop`] was called.
    async fn stopped(&self) {
        let mut stop = self.stop.subscribe();
        // An error means the outbox is gone: stopped too.
        let _ = stop.wait_for(|stopping| *stopping).await;
    }

    /// Starts the destination's worker, or wakes it.
    pub fn wake(self: &Arc<Self>, destination: String) {
        if self.stopping() {
            return;
        }
        let mut workers = lock(&self.workers);
        if let Some(worker) = workers.get_mut(&destination) {
            worker.dirty = true;
            worker.wake.notify_one();
            return;
        }
        let wake = Arc::new(Notify::new());
        workers.insert(
            destination.clone(),
            Worker {
                wake: wake.clone(),
                dirty: false,
            },
        );
        drop(workers);
        let outbox = self.clone();
        tokio::spawn(async move {
            outbox.clone().work(destination, wake).await;
            outbox.ended.notify_waiters();
        });
    }

    /// One destination's worker. It reads the destination's jobs in order
    /// and sends them in lanes, one per group: a group's jobs one at a
    /// time, in order (a provider gets a group's messages in hub order),
    /// up to `lanes` groups side by side, so that one group's slow or
    /// failing delivery holds back only that group, and the round trip to
    /// a distant provider does not cap the rate of all groups together.
    async fn work(self: Arc<Self>, destination: String, wake: Arc<Notify>) {
        let Ok(domain) = destination.parse::<ProviderDomain>() else {
            // Jobs are written with the domains of ClientIDs the hub
            // checked: a bad one is corrupted state. Keep the jobs, say so.
            tracing::error!(%destination, "outbox: a destination that is no domain");
            lock(&self.workers).remove(&destination);
            return;
        };
        let domain = Arc::new(domain);
        // Until when (seconds since the Unix epoch) this destination gets
        // one message per request.
        let unbatched = Arc::new(AtomicU64::new(0));
        let mut lanes = Lanes::default();
        // The lanes' sends run inside this task: a settled send continues
        // here without a wake-up of another task.
        let mut sends = FuturesUnordered::new();
        // Delivered jobs are completed beside the next sends (the group's
        // next job need not wait for its predecessor's bookkeeping), in
        // batches: up to `COMPLETE` at a time, or whatever there is once
        // nothing is in flight. Should completing fail, the job is sent
        // again (after the next read from the start), and the receiver
        // answers a repeat as it answered the first and queues nothing.
        let mut delivered: Vec<i64> = Vec::new();
        let mut completing: JoinSet<Result<(), mimid_store::StoreError>> = JoinSet::new();
        // The last job read: reads go on from there.
        let mut after: i64 = 0;
        // The last read returned all there was.
        let mut exhausted = false;
        // Until when this outbox holds the destination's lease.
        let mut leased_until: u64 = 0;
        loop {
            if let Some(worker) = lock(&self.workers).get_mut(&destination) {
                worker.dirty = false;
            }
            // Once stopping, nothing more is read or sent: what is in
            // flight settles, then the worker ends.
            let stopping = self.stopping();
            let now = (self.config.now)();
            if !stopping && leased_until.saturating_sub(now) < LEASE / 2 {
                let until = now.saturating_add(LEASE);
                match self
                    .hub
                    .store()
                    .lease_destination(&destination, &self.config.owner, now, until)
                    .await
                {
                    Ok(true) => leased_until = until,
                    Ok(false) => {
                        // Another process sends this destination's jobs:
                        // settle what is in flight, leave the rest to it.
                        while let Some(sent) = sends.next().await {
                            if let Ok((_, _, settled)) = sent {
                                delivered.extend(settled);
                            }
                        }
                        if !delivered.is_empty() {
                            let outbox = self.clone();
                            let ids = std::mem::take(&mut delivered);
                            completing
                                .spawn(async move { outbox.hub.store().complete_jobs(ids).await });
                        }
                        while let Some(completed) = completing.join_next().await {
                            log_completion(completed);
                        }
                        lock(&self.workers).remove(&destination);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%destination, error = %e, "outbox: cannot take the lease");
                        tokio::time::sleep(self.config.backoff_start).await;
                        continue;
                    }
                }
            }
            // Reads are of whole batches: one read per job would be a
            // round trip to the store per delivery.
            let room = HELD.saturating_sub(lanes.held);
            if !stopping && !exhausted && room >= BATCH {
                let limit = u32::try_from(BATCH).unwrap_or(u32::MAX);
                match self
                    .hub
                    .store()
                    .pending_jobs_after(&destination, after, limit)
                    .await
                {
                    Ok(jobs) => {
                        exhausted = jobs.len() < BATCH;
                        for job in jobs {
                            after = after.max(job.id);
                            // Built once, sent as often as it takes.
                            lanes.push(job, |job| self.request(&domain, job));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%destination, error = %e, "outbox: cannot read jobs");
                        tokio::time::sleep(self.config.backoff_start).await;
                        continue;
                    }
                }
            }
            // Lanes that sent what they held of their group, with more of it
            // left unread: read those jobs by group, up to the last job
            // read in order (later ones come with the next reads).
            let due = if stopping {
                Vec::new()
            } else {
                lanes.unread_due()
            };
            for (key, group_id, from) in due {
                let limit = u32::try_from(PER_LANE).unwrap_or(u32::MAX);
                match self
                    .hub
                    .store()
                    .pending_group_jobs(&destination, &group_id, from, after, limit)
                    .await
                {
                    Ok(jobs) => {
                        let complete = jobs.len() < PER_LANE;
                        let last = jobs.last().map(|job| job.id);
                        for job in jobs {
                            let request = self.request(&domain, &job);
                            lanes.refill(&key, job, request);
                        }
                        lanes.reread(&key, complete, last);
                    }
                    Err(e) => {
                        tracing::warn!(%destination, error = %e, "outbox: cannot read a group's jobs");
                        lanes.reread(&key, false, None);
                        tokio::time::sleep(self.config.backoff_start).await;
                    }
                }
            }
            let batch = if (self.config.now)() >= unbatched.load(Ordering::Relaxed) {
                MAX_BATCH
            } else {
                1
            };
            while !stopping && sends.len() < self.config.lanes.max(1) {
                let Some((key, jobs)) = lanes.next(batch) else {
                    break;
                };
                let outbox = self.clone();
                let domain = domain.clone();
                let unbatched = unbatched.clone();
                sends.push(
                    AssertUnwindSafe(async move {
                        let delivered = outbox.settle(&domain, &jobs, &unbatched).await;
                        (key, jobs.len(), delivered)
                    })
                    .catch_unwind(),
                );
            }
            if delivered.len() >= COMPLETE || (sends.is_empty() && !delivered.is_empty()) {
                let outbox = self.clone();
                let ids = std::mem::take(&mut delivered);
                completing.spawn(async move { outbox.hub.store().complete_jobs(ids).await });
            }
            if sends.is_empty() {
                // Nothing held, nothing in flight. Once the completions are
                // written, the next read starts from the first job again,
                // for any job whose completion failed.
                while let Some(completed) = completing.join_next().await {
                    log_completion(completed);
                }
                if stopping {
                    // Another process may take the destination at once.
                    if leased_until > 0
                        && let Err(e) = self
                            .hub
                            .store()
                            .release_destination(&destination, &self.config.owner)
                            .await
                    {
                        tracing::warn!(%destination, error = %e, "outbox: cannot give up the lease");
                    }
                    lock(&self.workers).remove(&destination);
                    return;
                }
                after = 0;
                let woken = tokio::select! {
                    woken = tokio::time::timeout(IDLE, wake.notified()) => woken.is_ok(),
                    // Looked at again at the top: stopping, it ends.
                    () = self.stopped() => true,
                };
                if woken {
                    exhausted = false;
                    continue;
                }
                // Given up before the worker leaves, so that another
                // process can take the destination at once; should a wake
                // come meanwhile, the loop takes the lease again.
                if let Err(e) = self
                    .hub
                    .store()
                    .release_destination(&destination, &self.config.owner)
                    .await
                {
                    tracing::warn!(%destination, error = %e, "outbox: cannot give up the lease");
                }
                leased_until = 0;
                let mut workers = lock(&self.workers);
                if workers.get(&destination).is_some_and(|w| w.dirty) {
                    exhausted = false;
                    continue;
                }
                workers.remove(&destination);
                return;
            }
            tokio::select! {
                sent = sends.next() => match sent {
                    Some(Ok((key, sent, settled))) => {
                        lanes.settled(key, sent);
                        delivered.extend(settled);
                    }
                    // A send does not panic. Should one, this worker stops
                    // (its other sends with it) and the next rescan starts
                    // another, which reads from the first job: the lost job
                    // is sent again, in its group's order.
                    Some(Err(_)) => {
                        tracing::error!(%destination, "outbox: a send panicked");
                        lock(&self.workers).remove(&destination);
                        return;
                    }
                    None => {}
                },
                Some(completed) = completing.join_next() => log_completion(completed),
                () = wake.notified() => exhausted = false,
                () = self.stopped(), if !stopping => {}
            }
        }
    }

    /// Sends a lane's jobs until each is settled: delivered (its id
    /// returned, to be completed), dead or expired. Several go in one
    /// request; if the destination refuses it for good, or one of them
    /// expires meanwhile, they are sent again one by one, in order, and the
    /// destination gets one message per request for a while.
    async fn settle(
        &self,
        destination: &ProviderDomain,
        jobs: &[Prepared],
        unbatched: &AtomicU64,
    ) -> Vec<i64> {
        if let [(job, request)] = jobs {
            return self
                .settle_one(destination, job, request)
                .await
                .into_iter()
                .collect();
        }
        if let Some(delivered) = self.settle_batch(destination, jobs).await {
            return delivered;
        }
        unbatched.store(
            (self.config.now)().saturating_add(UNBATCHED),
            Ordering::Relaxed,
        );
        let mut delivered = Vec::with_capacity(jobs.len());
        for (job, request) in jobs {
            if self.stopping() {
                break;
            }
            delivered.extend(self.settle_one(destination, job, request).await);
        }
        delivered
    }

    /// Sends `jobs` in one `deliver_messages` request until it is
    /// delivered (their ids returned), or the outbox stops (none
    /// returned); `None` once it is refused for good or one of them has
    /// expired.
    async fn settle_batch(
        &self,
        destination: &ProviderDomain,
        jobs: &[Prepared],
    ) -> Option<Vec<i64>> {
        let request = batch_request(jobs)?;
        let mut failures: u32 = 0;
        loop {
            let now = (self.config.now)();
            match self.courier.send(destination, &request).await {
                Sent::Delivered(ok) => {
                    attempted(destination, "delivered");
                    self.delivered(destination, &ok);
                    return Some(jobs.iter().map(|(job, _)| job.id).collect());
                }
                Sent::Refused(reason) => {
                    attempted(destination, "refused");
                    tracing::info!(%destination, %reason, "outbox: a batch was refused, sending its messages one by one");
                    return None;
                }
                Sent::Retry { .. } if jobs.iter().any(|(job, _)| self.expired(job, now)) => {
                    return None;
                }
                Sent::Retry { after, reason } => {
                    attempted(destination, "retry");
                    tracing::info!(%destination, %reason, "outbox: delivery failed, will retry");
                    failures = failures.saturating_add(1);
                    for (job, _) in jobs {
                        let _ = self.hub.store().record_attempt(job.id).await;
                    }
                    if !self
                        .pause(self.delay(destination.as_str(), failures, after))
                        .await
                    {
                        return Some(Vec::new());
                    }
                }
            }
        }
    }

    /// Sends one job until it is settled: delivered (its id returned, to be
    /// completed), dead or expired, or the outbox stops. Each failure waits
    /// longer.
    async fn settle_one(
        &self,
        destination: &ProviderDomain,
        job: &Job,
        request: &Result<QueueingServiceRequest, String>,
    ) -> Option<i64> {
        let mut failures: u32 = 0;
        loop {
            match self.attempt(destination, job, request).await {
                Settled::Delivered => return Some(job.id),
                Settled::Yes => return None,
                Settled::No(after) => {
                    failures = failures.saturating_add(1);
                    let _ = self.hub.store().record_attempt(job.id).await;
                    let delay = self.delay(destination.as_str(), failures, after);
                    if !self.pause(delay).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Sends one job once; settles it if it was delivered, refused for
    /// good or expired.
    async fn attempt(
        &self,
        destination: &ProviderDomain,
        job: &Job,
        request: &Result<QueueingServiceRequest, String>,
    ) -> Settled {
        let now = (self.config.now)();
        let expired = self.expired(job, now);
        let request = match request {
            Ok(request) => request,
            Err(reason) => {
                return self
                    .dead(job, format!("unsendable job: {reason}"), now)
                    .await;
            }
        };
        let sent = self.courier.send(destination, request).await;
        attempted(
            destination,
            match &sent {
                Sent::Delivered(_) => "delivered",
                Sent::Refused(_) => "refused",
                Sent::Retry { .. } => "retry",
            },
        );
        match sent {
            Sent::Delivered(ok) => {
                self.delivered(destination, &ok);
                Settled::Delivered
            }
            Sent::Refused(reason) => self.dead(job, format!("refused: {reason}"), now).await,
            Sent::Retry { reason, .. } if expired => {
                let reason = format!(
                    "expired after {} attempts; last: {reason}",
                    job.attempts.saturating_add(1)
                );
                self.dead(job, reason, now).await
            }
            Sent::Retry { after, reason } => {
                tracing::info!(%destination, %reason, "outbox: delivery failed, will retry");
                Settled::No(after)
            }
        }
    }

    /// Waits `delay` before a retry; `false` (at once) if the outbox
    /// stops meanwhile: the job stays pending, for the next start.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => !self.stopping(),
            () = self.stopped() => false,
        }
    }

    /// Whether `job` was committed longer than `delivery_expiry` ago.
    fn expired(&self, job: &Job, now: u64) -> bool {
        now.saturating_sub(job.created_at) > self.config.delivery_expiry.as_secs()
    }

    /// Logs the recipients a destination said it does not know.
    fn delivered(&self, destination: &ProviderDomain, ok: &QueueingServiceOk) {
        if !ok.unknown_recipients.is_empty() {
            tracing::warn!(
                %destination,
                unknown = ?ok.unknown_recipients,
                "outbox: the destination does not know these recipients"
            );
        }
    }

    async fn dead(&self, job: &Job, reason: String, now: u64) -> Settled {
        tracing::warn!(
            destination = %job.destination,
            job = job.id,
            %reason,
            "outbox: job moved to the dead letters"
        );
        match self.hub.store().dead_letter(job.id, reason, now).await {
            Ok(()) => {
                metrics::counter!(DEAD_LETTERED, "destination" => job.destination.clone())
                    .increment(1);
                Settled::Yes
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox: cannot move a job to the dead letters");
                Settled::No(None)
            }
        }
    }

    /// The request for a job: its stored `DeliverMessage` (stored without
    /// recipients) with the job's recipients.
    fn request(
        &self,
        destination: &ProviderDomain,
        job: &Job,
    ) -> Result<QueueingServiceRequest, String> {
        let mut deliver = DeliverMessage::decode_exact(&job.body, &Limits::default())
            .map_err(|e| e.to_string())?;
        deliver.recipients = decode_recipients(&job.recipients)?;
        Ok(QueueingServiceRequest {
            version: mimid_wire::PROTOCOL_VERSION,
            sender: self.config.domain.clone(),
            recipient: destination.clone(),
            message_id: MessageId(job.message_id),
            payload: QueueingServicePayload::DeliverMessage(deliver),
        })
    }

    /// The wait before the next attempt: `backoff_start` doubled per
    /// failure up to `backoff_max`, scaled by a random factor in [0.5, 1)
    /// so that senders do not retry in step, and never shorter than the
    /// destination's `Retry-After`.
    fn delay(&self, destination: &str, failures: u32, after: Option<Duration>) -> Duration {
        let doubled = self
            .config
            .backoff_start
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.config.backoff_max);
        let random =
            std::collections::hash_map::RandomState::new().hash_one((destination, failures));
        let jitter = 0.5 + (random % 1000) as f64 / 2000.0;
        let delay = doubled.mul_f64(jitter);
        after.map_or(delay, |after| delay.max(after))
    }
}

/// The lane of a job: its message's group, read from the start of its
/// stored `DeliverMessage` (the rest is decoded only for a job that is
/// taken), or, if that does not decode, the job alone.
fn lane_key(job: &Job) -> LaneKey {
    let limits = Limits::default();
    match GroupIdField::decode(&mut Reader::new(&job.body, &limits)) {
        Ok(group_id) => LaneKey::Group(group_id.0.to_mls_bytes()),
        Err(_) => LaneKey::Job(job.id),
    }
}

/// What keeps jobs in one lane: the group of the job's message, or, for a
/// job whose stored request does not decode, the job alone (it goes to the
/// dead letters at its first attempt).
#[derive(Clone, PartialEq, Eq, Hash)]
enum LaneKey {
    /// The group's MLS `group_id`, as the hub stores it with the message.
    Group(Vec<u8>),
    Job(i64),
}

/// Where a lane's unread jobs start.
struct Unread {
    from: i64,
    /// Being read (not to be asked for again meanwhile).
    reading: bool,
}

/// A job with the request built from it.
type Prepared = (Job, Result<QueueingServiceRequest, String>);

/// A destination's jobs that its worker has read and not yet settled, by
/// lane.
#[derive(Default)]
struct Lanes {
    /// Each lane's jobs not yet sent, oldest first.
    waiting: HashMap<LaneKey, VecDeque<Prepared>>,
    /// Lanes with jobs waiting and none in flight, in the order they
    /// became ready (round robin).
    ready: VecDeque<LaneKey>,
    /// Lanes with a job in flight.
    busy: HashSet<LaneKey>,
    /// Lanes with jobs left unread (the lane held `PER_LANE`): from which
    /// job on.
    unread: HashMap<LaneKey, Unread>,
    /// Jobs read and not yet settled.
    held: usize,
}

impl Lanes {
    /// Adds a job read from the store (in id order) to its lane, or, when
    /// the lane holds `PER_LANE` already and the worker has no room to
    /// spare, or the lane has jobs left unread, leaves it unread (read
    /// again by group later, in order).
    /// Its request is built (by `build`) only if it is taken.
    fn push(
        &mut self,
        job: Job,
        build: impl FnOnce(&Job) -> Result<QueueingServiceRequest, String>,
    ) {
        let key = lane_key(&job);
        // A group with jobs left unread: this one, later, is unread too.
        if let Some(unread) = self.unread.get_mut(&key) {
            unread.from = unread.from.min(job.id);
            return;
        }
        let spare = self.held < HELD.saturating_sub(BATCH);
        if !spare && self.waiting.get(&key).is_some_and(|q| q.len() >= PER_LANE) {
            self.unread.insert(
                key,
                Unread {
                    from: job.id,
                    reading: false,
                },
            );
            return;
        }
        let request = build(&job);
        self.refill(&key, job, request);
    }

    /// Adds a job to the lane `key`, after the ones it holds (or, if its
    /// request could not be built, to a lane of its own).
    fn refill(&mut self, key: &LaneKey, job: Job, request: Result<QueueingServiceRequest, String>) {
        let alone;
        let key = if request.is_ok() {
            key
        } else {
            alone = LaneKey::Job(job.id);
            &alone
        };
        let queue = self.waiting.entry(key.clone()).or_default();
        if queue.is_empty() && !self.busy.contains(key) {
            self.ready.push_back(key.clone());
        }
        queue.push_back((job, request));
        self.held = self.held.saturating_add(1);
    }

    /// Lanes with jobs left unread that have sent all they held: their
    /// group id and the first unread job. Each is returned once until
    /// [`Lanes::reread`] says how its read went.
    fn unread_due(&mut self) -> Vec<(LaneKey, Vec<u8>, i64)> {
        let mut due = Vec::new();
        for (key, unread) in self.unread.iter_mut() {
            let LaneKey::Group(group_id) = key else {
                continue;
            };
            if unread.reading || self.busy.contains(key) || self.waiting.contains_key(key) {
                continue;
            }
            unread.reading = true;
            due.push((key.clone(), group_id.clone(), unread.from));
        }
        due
    }

    /// How reading a lane's unread jobs went: all read (`complete`), or up
    /// to `last`, or not at all (`None`: tried again once the lane is
    /// idle again, i.e. at once).
    fn reread(&mut self, key: &LaneKey, complete: bool, last: Option<i64>) {
        if complete {
            self.unread.remove(key);
        } else if let Some(unread) = self.unread.get_mut(key) {
            unread.reading = false;
            if let Some(last) = last {
                unread.from = last.saturating_add(1);
            }
        }
    }

    /// The next jobs to send: the oldest of the lane ready longest, and as
    /// many after it as wait, up to `max` and [`BATCH_BYTES`].
    fn next(&mut self, max: usize) -> Option<(LaneKey, Vec<Prepared>)> {
        while let Some(key) = self.ready.pop_front() {
            let Some(queue) = self.waiting.get_mut(&key) else {
                continue;
            };
            let mut jobs = Vec::new();
            let mut bytes: usize = 0;
            while let Some((job, _)) = queue.front() {
                let size = job.body.len().saturating_add(job.recipients.len());
                if !jobs.is_empty()
                    && (jobs.len() >= max || bytes.saturating_add(size) > BATCH_BYTES)
                {
                    break;
                }
                bytes = bytes.saturating_add(size);
                jobs.extend(queue.pop_front());
            }
            if queue.is_empty() {
                self.waiting.remove(&key);
            }
            if jobs.is_empty() {
                continue;
            }
            self.busy.insert(key.clone());
            return Some((key, jobs));
        }
        None
    }

    /// The lane's `sent` jobs in flight are settled: its next may go.
    fn settled(&mut self, key: LaneKey, sent: usize) {
        self.held = self.held.saturating_sub(sent);
        self.busy.remove(&key);
        if self.waiting.contains_key(&key) {
            self.ready.push_back(key);
        }
    }
}

/// One `deliver_messages` request for a lane's jobs (all of them requests
/// built for one destination), under the first one's id; `None` if one of
/// them is no message.
fn batch_request(jobs: &[Prepared]) -> Option<QueueingServiceRequest> {
    let mut messages = Vec::with_capacity(jobs.len());
    let mut first: Option<&QueueingServiceRequest> = None;
    for (_, request) in jobs {
        let request = request.as_ref().ok()?;
        let QueueingServicePayload::DeliverMessage(deliver) = &request.payload else {
            return None;
        };
        first.get_or_insert(request);
        messages.push(BatchedMessage {
            message_id: request.message_id,
            deliver_message: deliver.clone(),
        });
    }
    let first = first?;
    Some(QueueingServiceRequest {
        version: first.version,
        sender: first.sender.clone(),
        recipient: first.recipient.clone(),
        message_id: first.message_id,
        payload: QueueingServicePayload::DeliverMessages(DeliverMessages { messages }),
    })
}

/// Counts a delivery attempt.
fn attempted(destination: &ProviderDomain, outcome: &'static str) {
    metrics::counter!(ATTEMPTS, "destination" => destination.to_string(), "outcome" => outcome)
        .increment(1);
}

fn log_completion(completed: Result<Result<(), mimid_store::StoreError>, tokio::task::JoinError>) {
    match completed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "outbox: cannot complete a delivered job"),
        Err(e) => tracing::warn!(error = %e, "outbox: completing a job failed"),
    }
}

enum Settled {
    /// Delivered: the job is to be completed.
    Delivered,
    /// Moved to the dead letters.
    Yes,
    /// Try again, not before this.
    No(Option<Duration>),
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
