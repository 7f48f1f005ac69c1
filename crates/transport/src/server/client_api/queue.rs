//! `GET /client/v1/queue` and `POST /client/v1/ack`: the client's own
//! queue, read from a position on (waiting up to `wait` seconds for
//! something to arrive: long polling, woken by the store's bell the moment
//! a message for the client is durable), and acknowledged up to a position.
//! What a client has not acknowledged it gets again on its next read, from
//! any connection. Each read also says whether the client runs low on
//! KeyPackages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use mimid_store::{KeyPackageKind, Store};
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::auth::ClientSigned;
use super::{ApiFailure, base64, json, parse};

/// Longest wait of a read (seconds).
const MAX_WAIT: u64 = 25;

/// Messages in one answer, at most.
const MAX_READ: u32 = 256;

/// How often a waiting read looks again without the store's bell (which
/// rings for what this process stores, not for another process's writes).
const LOOK_AGAIN: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
pub(super) struct ReadQuery {
    /// Messages after this position (default: all not acknowledged).
    #[serde(default)]
    after: u64,
    /// Seconds to wait for a message if there is none (0 to 25: under the
    /// server's request timeout).
    #[serde(default)]
    wait: u64,
}

#[derive(Serialize)]
struct Queued {
    seq: u64,
    sender: String,
    group_id: String,
    epoch: u64,
    message: String,
    received_at: u64,
}

#[derive(Serialize)]
struct Messages {
    messages: Vec<Queued>,
    /// The kinds of KeyPackage (`connection`, `regular`) of which the client
    /// has fewer than [`LOW_STOCK`] one-time packages left, or no
    /// last-resort one: time to publish more.
    low_key_packages: Vec<&'static str>,
}

/// One-time KeyPackages of a kind below which a client is told to publish.
pub(crate) const LOW_STOCK: u64 = 5;

pub(super) async fn read<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    Query(query): Query<ReadQuery>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let deadline = Instant::now() + Duration::from_secs(query.wait.min(MAX_WAIT));
    let store = state.service.store();
    // Listening before each look: a message stored after the look rings.
    let listener = store.queue_bell().listen(request.client.as_str());
    loop {
        let rung = listener.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let queued = store
            .client_queue(request.client.as_str(), query.after, MAX_READ)
            .await?;
        let now = Instant::now();
        if !queued.is_empty() || now >= deadline {
            return answer(&state, &request, queued).await;
        }
        let _ = tokio::time::timeout_at((now + LOOK_AGAIN).min(deadline).into(), rung).await;
    }
}

/// The messages read, and which kinds of KeyPackage run low.
async fn answer<S: Store>(
    state: &AppState<S>,
    request: &ClientSigned,
    queued: Vec<mimid_store::Queued>,
) -> Result<Response, ApiFailure> {
    let store = state.service.store();
    let messages = queued
        .into_iter()
        .map(|q| Queued {
            seq: q.seq,
            sender: q.sender,
            group_id: base64(&q.group_id),
            epoch: q.epoch,
            message: base64(&q.message),
            received_at: q.received_at,
        })
        .collect();
    let mut low_key_packages = Vec::new();
    for (kind, name) in [
        (KeyPackageKind::Connection, "connection"),
        (KeyPackageKind::Regular, "regular"),
    ] {
        let stock = store
            .key_package_stock(request.client.as_str(), kind, state.clock.now())
            .await?;
        if stock.one_time < LOW_STOCK || !stock.last_resort {
            low_key_packages.push(name);
        }
    }
    Ok(json(
        StatusCode::OK,
        &Messages {
            messages,
            low_key_packages,
        },
    ))
}

#[derive(Deserialize)]
struct Ack {
    up_to: u64,
}

pub(super) async fn acknowledge<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let asked: Ack = parse(&request.body)?;
    state
        .service
        .store()
        .acknowledge(request.client.as_str().to_owned(), asked.up_to)
        .await?;
    Ok(json(StatusCode::OK, &serde_json::json!({})))
}
