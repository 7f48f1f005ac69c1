//! The operator's listener (`[ops] listen`, plain HTTP, meant for a
//! loopback or management address): `/metrics` (Prometheus), `/healthz`
//! (the process answers) and `/readyz` (it can serve: the store answers a
//! read in time and it is not stopping). The metrics themselves are
//! recorded where things happen, through the `metrics` facade; this module
//! installs the recorder and adds the gauges read from the store at each
//! scrape (`docs/operations.md`, "Monitoring").

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mimid_service::HubService;
use mimid_store::Store;
use mimid_transport::node::Node;
use mimid_transport::{CertSlot, Clock as _, KeyRing, SystemClock};

/// Longest wait for the store's answer to `/readyz` or a scrape.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Latency buckets (seconds) of every histogram: from half a millisecond
/// (a small SQLite transaction) to the request timeout.
const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the Prometheus recorder for the whole process. Call once,
/// before anything records.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// The `# HELP` lines.
fn describe() {
    use mimid_transport::server::observe;
    metrics::describe_counter!(
        observe::REQUESTS,
        "Requests answered, by endpoint and status."
    );
    metrics::describe_histogram!(
        observe::REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time from a request's arrival to its answer, by endpoint."
    );
    metrics::describe_counter!(observe::REJECTED, "Requests refused, by reason.");
    metrics::describe_counter!(
        observe::RATE_LIMITED,
        "Requests refused by a rate limit, by layer."
    );
    metrics::describe_histogram!(
        mimid_store::TRANSACTION_SECONDS,
        metrics::Unit::Seconds,
        "Time of each store write transaction, commit and sync included."
    );
    metrics::describe_counter!(
        mimid_service::outbox::ATTEMPTS,
        "Delivery attempts by destination and outcome (delivered, retry, refused)."
    );
    metrics::describe_counter!(
        mimid_service::outbox::DEAD_LETTERED,
        "Jobs moved to the dead letters since the start, by destination."
    );
    metrics::describe_counter!(
        mimid_service::REPEATED,
        "Application messages a group had accepted already, answered and not fanned out again."
    );
    metrics::describe_gauge!(OUTBOX_JOBS, "Delivery jobs waiting, by destination.");
    metrics::describe_gauge!(
        OUTBOX_OLDEST,
        metrics::Unit::Seconds,
        "Age of the oldest waiting delivery job, by destination."
    );
    metrics::describe_gauge!(DEAD_LETTERS, "Dead letters kept in the store.");
    metrics::describe_gauge!(
        CERTIFICATE_EXPIRY,
        metrics::Unit::Seconds,
        "When the served certificate expires (Unix time)."
    );
    metrics::describe_gauge!(
        KEY_EXPIRY,
        metrics::Unit::Seconds,
        "When the current provider signing key expires (Unix time)."
    );
    metrics::describe_counter!(RELOADS, "Reloads on SIGHUP, by what and outcome.");
    metrics::describe_gauge!(STORE_UP, "1 if the store answered the last scrape's read.");
}

const OUTBOX_JOBS: &str = "mimid_outbox_jobs";
const OUTBOX_OLDEST: &str = "mimid_outbox_oldest_job_age_seconds";
const DEAD_LETTERS: &str = "mimid_outbox_dead_letters";
const CERTIFICATE_EXPIRY: &str = "mimid_certificate_expiry_timestamp_seconds";
const KEY_EXPIRY: &str = "mimid_provider_key_expiry_timestamp_seconds";
const STORE_UP: &str = "mimid_store_up";
/// Reloads, by `what` (`certificate`, `provider_keys`) and `outcome`.
pub const RELOADS: &str = "mimid_reloads_total";

/// What the operator's endpoints look at.
pub struct Ops<S: Store> {
    metrics: PrometheusHandle,
    service: Arc<HubService<S>>,
    certificate: Arc<CertSlot>,
    keys: KeyRing,
    stopping: AtomicBool,
    /// Destinations given a gauge so far: set to 0 once they have no jobs.
    destinations: Mutex<HashSet<String>>,
}

impl<S: Store> Ops<S> {
    pub fn new(node: &Node<S>, metrics: PrometheusHandle) -> Arc<Self> {
        Arc::new(Ops {
            metrics,
            service: node.service.clone(),
            certificate: node.certificate().clone(),
            keys: node.keys().clone(),
            stopping: AtomicBool::new(false),
            destinations: Mutex::new(HashSet::new()),
        })
    }

    /// From now on `/readyz` answers 503: a load balancer stops sending.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Serves the endpoints on `listener` until the task is aborted; the
    /// recorder's upkeep runs beside.
    pub fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let router = Router::new()
            .route("/metrics", get(metrics::<S>))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz::<S>))
            .with_state(self.clone());
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the operator listener failed");
            }
        })];
        let handle = self.metrics.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        }));
        tasks
    }

    /// Sets the gauges read from the store and the key material.
    async fn refresh(&self) {
        let now = SystemClock.now();
        if let Some(not_after) = self.certificate.not_after() {
            metrics::gauge!(CERTIFICATE_EXPIRY).set(not_after as f64);
        }
        metrics::gauge!(KEY_EXPIRY)
            .set(self.keys.get().current().verification_key().not_after as f64);
        let stats = tokio::time::timeout(STORE_TIMEOUT, self.service.store().outbox_stats()).await;
        let stats = match stats {
            Ok(Ok(stats)) => stats,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics: cannot read the outbox");
                metrics::gauge!(STORE_UP).set(0.0);
                return;
            }
            Err(_) => {
                tracing::warn!("metrics: the store did not answer in time");
                metrics::gauge!(STORE_UP).set(0.0);
                return;
            }
        };
        metrics::gauge!(STORE_UP).set(1.0);
        metrics::gauge!(DEAD_LETTERS).set(stats.dead_letters as f64);
        let mut seen = self
            .destinations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut gone: HashSet<String> = seen.clone();
        for backlog in stats.destinations {
            gone.remove(&backlog.destination);
            let age = now.saturating_sub(backlog.oldest_created_at);
            metrics::gauge!(OUTBOX_JOBS, "destination" => backlog.destination.clone())
                .set(backlog.jobs as f64);
            metrics::gauge!(OUTBOX_OLDEST, "destination" => backlog.destination.clone())
                .set(age as f64);
            seen.insert(backlog.destination);
        }
        for destination in gone {
            metrics::gauge!(OUTBOX_JOBS, "destination" => destination.clone()).set(0.0);
            metrics::gauge!(OUTBOX_OLDEST, "destination" => destination).set(0.0);
        }
    }
}

async fn metrics<S: Store>(State(ops): State<Arc<Ops<S>>>) -> Response {
    ops.refresh().await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz<S: Store>(State(ops): State<Arc<Ops<S>>>) -> Response {
    if ops.stopping.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: stopping\n").into_response();
    }
    // A primary-key lookup: the cheapest read that needs the database.
    match tokio::time::timeout(STORE_TIMEOUT, ops.service.store().group_version(b"readyz")).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: store: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store did not answer in time\n",
        )
            .into_response(),
    }
}
