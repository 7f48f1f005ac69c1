//! `POST /client/v1/key_packages`: the client publishes KeyPackages
//! (`docs/protocol.md` 9), all stored or none.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use mimid_store::Store;
use mimid_wire::KeyPackage;
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::auth::ClientSigned;
use super::{ApiFailure, json, parse, unbase64};
use crate::error::TransportError;

#[derive(Deserialize)]
struct Publish {
    /// Bare RFC 9420 KeyPackages, base64url.
    key_packages: Vec<String>,
}

#[derive(Serialize)]
struct Published {
    stored: usize,
}

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let asked: Publish = parse(&request.body)?;
    let max = state.config.limits.max_key_packages;
    if asked.key_packages.len() > max {
        return Err(TransportError::Malformed(format!("more than {max} KeyPackages")).into());
    }
    let packages = asked
        .key_packages
        .iter()
        .map(|kp| {
            KeyPackage::from_bytes(&unbase64("key_packages", kp)?)
                .map_err(|e| TransportError::Malformed(format!("key_packages: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    state
        .people
        .publish(
            state.service.store(),
            &request.client,
            &packages,
            state.clock.now(),
        )
        .await
        .map_err(TransportError::from)?;
    Ok(json(
        StatusCode::OK,
        &Published {
            stored: packages.len(),
        },
    ))
}
