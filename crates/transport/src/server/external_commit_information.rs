//! `/external_commit_information` (`docs/protocol.md` 3.2, 5.3): signed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use mimid_core::DsEndpoint;
use mimid_store::Store;

use super::{AppState, Failure, Signed, ds};

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: Signed,
) -> Result<Response, Failure> {
    ds::handle(&state, DsEndpoint::ExternalCommitInformation, request).await
}
