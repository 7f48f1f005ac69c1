//! Client signatures of concurrent requests, checked in batches on a thread
//! of their own: a batch of Ed25519 signatures costs about half as much per
//! signature as checking them one by one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use mimid_core::{SignatureCheck, Verified, verify_batch};
use tokio::sync::oneshot;

/// At most this many signatures per batch (the gain flattens out by then,
/// and a batch's latency grows with it).
const MAX_BATCH: usize = 64;

type Job = (SignatureCheck, oneshot::Sender<Option<Verified>>);

pub(crate) struct BatchVerifier {
    jobs: mpsc::Sender<Job>,
    stats: Arc<BatchStats>,
}

/// Counters of the batches checked so far.
#[derive(Default)]
pub(crate) struct BatchStats {
    batches: AtomicU64,
    signatures: AtomicU64,
}

impl BatchVerifier {
    /// Starts the verifying thread; it ends when the verifier is dropped.
    pub(crate) fn start() -> std::io::Result<Self> {
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
                    for (reply, verified) in replies.into_iter().zip(verify_batch(checks)) {
                        // The request may have been dropped meanwhile.
                        let _ = reply.send(verified);
                    }
                }
            })?;
        Ok(BatchVerifier { jobs, stats })
    }

    /// (batches, signatures) checked so far.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.signatures.load(Ordering::Relaxed),
        )
    }

    /// `None` if the signature did not verify (or the thread is gone): the
    /// step then checks it itself.
    pub(crate) async fn verify(&self, check: SignatureCheck) -> Option<Verified> {
        let (reply, verified) = oneshot::channel();
        self.jobs.send((check, reply)).ok()?;
        verified.await.ok().flatten()
    }
}
