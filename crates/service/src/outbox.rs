//! The outbox (`docs/protocol.md` 6.4): the delivery jobs a hub's steps
//! commit are sent by one worker per destination provider, oldest first,
//! one request in flight, so that a provider receives a group's messages
//! in hub order. A failing destination backs off alone (randomised
//! exponential backoff, at least its `Retry-After`); a job its destination
//! refuses for good, or one still undelivered after `delivery_expiry`, goes
//! to the dead letters with the reason, so one poisoned message cannot
//! block a queue. Nothing is dropped silently.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mimid_store::{Job, Store};
use mimid_wire::{
    DeliverMessage, Limits, MessageId, ProviderDomain, QueueingServiceOk, QueueingServicePayload,
    QueueingServiceRequest, Wire,
};
use tokio::sync::Notify;

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
    /// Seconds since the Unix epoch (a clock tests can drive).
    pub now: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl OutboxConfig {
    pub fn new(domain: ProviderDomain) -> Self {
        OutboxConfig {
            domain,
            backoff_start: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            delivery_expiry: Duration::from_secs(7 * 24 * 3600),
            rescan: Duration::from_secs(5),
            now: Arc::new(crate::unix_now),
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
}

/// Jobs a worker reads at a time.
const BATCH: u32 = 64;

/// A worker with nothing to send stops after this long.
const IDLE: Duration = Duration::from_secs(30);

impl<S: Store, C: Courier> Outbox<S, C> {
    /// An outbox for `hub`'s jobs, which it is told of as they become
    /// durable (it sets itself as the hub's job listener).
    pub fn new(hub: Arc<HubService<S>>, courier: Arc<C>, config: OutboxConfig) -> Arc<Self> {
        let outbox = Arc::new(Outbox {
            hub: hub.clone(),
            courier,
            config,
            workers: Mutex::new(HashMap::new()),
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
        loop {
            match self.hub.store().job_destinations().await {
                Ok(destinations) => {
                    for destination in destinations {
                        self.wake(destination);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "outbox: cannot list destinations"),
            }
            tokio::time::sleep(self.config.rescan).await;
        }
    }

    /// Starts the destination's worker, or wakes it.
    pub fn wake(self: &Arc<Self>, destination: String) {
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
        tokio::spawn(async move { outbox.work(destination, wake).await });
    }

    /// One destination's worker: sends its jobs in order, one at a time.
    async fn work(self: Arc<Self>, destination: String, wake: Arc<Notify>) {
        let Ok(domain) = destination.parse::<ProviderDomain>() else {
            // Jobs are written with the domains of ClientIDs the hub
            // checked: a bad one is corrupted state. Keep the jobs, say so.
            tracing::error!(%destination, "outbox: a destination that is no domain");
            lock(&self.workers).remove(&destination);
            return;
        };
        let mut failures: u32 = 0;
        loop {
            if let Some(worker) = lock(&self.workers).get_mut(&destination) {
                worker.dirty = false;
            }
            let jobs = match self.hub.store().pending_jobs(&destination, BATCH).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(%destination, error = %e, "outbox: cannot read jobs");
                    tokio::time::sleep(self.config.backoff_start).await;
                    continue;
                }
            };
            if jobs.is_empty() {
                if tokio::time::timeout(IDLE, wake.notified()).await.is_ok() {
                    continue;
                }
                let mut workers = lock(&self.workers);
                if workers.get(&destination).is_some_and(|w| w.dirty) {
                    continue;
                }
                workers.remove(&destination);
                return;
            }
            // Delivered jobs are completed beside the next sends (the next
            // job need not wait for this one's bookkeeping), all before the
            // next read, which must not see them again. Should completing
            // fail, the job is sent again later, and the receiver answers a
            // repeat as it answered the first and queues nothing.
            let mut completing = Vec::with_capacity(jobs.len());
            for job in jobs {
                // Built once, sent as often as it takes: until this job is
                // settled (delivered, dead or expired), nothing after it is
                // sent.
                let request = self.request(&domain, &job);
                loop {
                    match self.attempt(&domain, &job, &request).await {
                        Settled::Delivered => {
                            failures = 0;
                            let outbox = self.clone();
                            completing.push(tokio::spawn(async move {
                                outbox.hub.store().complete_job(job.id).await
                            }));
                            break;
                        }
                        Settled::Yes => {
                            failures = 0;
                            break;
                        }
                        Settled::No(after) => {
                            failures = failures.saturating_add(1);
                            let _ = self.hub.store().record_attempt(job.id).await;
                            tokio::time::sleep(self.delay(&destination, failures, after)).await;
                        }
                    }
                }
            }
            for completed in completing {
                match completed.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "outbox: cannot complete a delivered job")
                    }
                    Err(e) => tracing::warn!(error = %e, "outbox: completing a job failed"),
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
        let expired = now.saturating_sub(job.created_at) > self.config.delivery_expiry.as_secs();
        let request = match request {
            Ok(request) => request,
            Err(reason) => {
                return self
                    .dead(job, format!("unsendable job: {reason}"), now)
                    .await;
            }
        };
        match self.courier.send(destination, request).await {
            Sent::Delivered(ok) => {
                if !ok.unknown_recipients.is_empty() {
                    tracing::warn!(
                        %destination,
                        unknown = ?ok.unknown_recipients,
                        "outbox: the destination does not know these recipients"
                    );
                }
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

    async fn dead(&self, job: &Job, reason: String, now: u64) -> Settled {
        tracing::warn!(
            destination = %job.destination,
            job = job.id,
            %reason,
            "outbox: job moved to the dead letters"
        );
        match self.hub.store().dead_letter(job.id, reason, now).await {
            Ok(()) => Settled::Yes,
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
