//! Ed25519 signatures of concurrent requests, checked in batches on a
//! thread of their own: a batch costs about half as much per signature as
//! checking them one by one. Client signatures (for the hub's steps) and
//! provider signatures (for the transport) share the batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use mimid_core::{Ed25519Check, SignatureCheck, Verified, verify_each};
use tokio::sync::oneshot;

/// At most this many signatures per batch (the gain flattens out by then,
/// and a batch's latency grows with it).
const MAX_BATCH: usize = 64;

/// A check, and where its result goes (with the check, for its content).
type Job = (Ed25519Check, oneshot::Sender<(Ed25519Check, bool)>);

/// The batching thread, shared by whoever checks signatures.
pub struct BatchVerifier {
    jobs: mpsc::Sender<Job>,
    stats: Arc<BatchStats>,
}

/// Counters of the batches checked so far.
#[derive(Default)]
struct BatchStats {
    batches: AtomicU64,
    signatures: AtomicU64,
}

impl BatchVerifier {
    /// Starts the verifying thread; it ends when the verifier is dropped.
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let stats = Arc::new(BatchStats::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("mimid-verify".into())
            .spawn(move || {
                // Whatever queued up while the last batch was checked forms
                // the next one: batches grow with the load, and a lone
                // request waits for nobody.
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    counters
                        .signatures
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let (checks, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let valid = verify_each(&checks);
                    for ((reply, check), valid) in replies.into_iter().zip(checks).zip(valid) {
                        // The request may have been dropped meanwhile.
                        let _ = reply.send((check, valid));
                    }
                }
            })?;
        Ok(BatchVerifier { jobs, stats })
    }

    /// (batches, signatures) checked so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.signatures.load(Ordering::Relaxed),
        )
    }

    /// Whether `check` verifies, checked in the next batch (here and now
    /// if the thread is gone); `None` only if the thread went away with
    /// the check.
    pub async fn verify_ed25519(&self, check: Ed25519Check) -> Option<(Ed25519Check, bool)> {
        let (reply, result) = oneshot::channel();
        if let Err(mpsc::SendError((check, _))) = self.jobs.send((check, reply)) {
            let valid = check.verify();
            return Some((check, valid));
        }
        result.await.ok()
    }

    /// `None` if the client signature did not verify (or the check was
    /// lost): the step then checks it itself.
    pub async fn verify(&self, check: SignatureCheck) -> Option<Verified> {
        let (index, check) = check.into_parts();
        match self.verify_ed25519(check).await? {
            (check, true) => Some(SignatureCheck::verified(index, check)),
            (_, false) => None,
        }
    }
}
