//! `GET /.well-known/mimi/ds-domain` (`docs/protocol.md` 3.3): this
//! provider's DS host, one line.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mimid_store::Store;

use super::AppState;

pub(super) async fn handle<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        format!("{}\n", state.config.ds_authority),
    )
        .into_response()
}
