//! `POST /client/v1/enrol`: a new client of a user, with the one-time
//! secret the operator handed out for that user (`mimid user invite`) and
//! the Ed25519 key it will sign its requests with.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use mimid_core::HubError;
use mimid_store::{Store, StoreError};
use mimid_wire::{ClientId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::AppState;
use super::{ApiFailure, json, parse, unbase64};
use crate::error::TransportError;

#[derive(Deserialize)]
struct Enrol {
    /// The enrolment secret.
    secret: String,
    /// The user's UserID.
    user: String,
    /// The new client's device name: its ClientID is the user's with it.
    device: String,
    /// The Ed25519 public key, base64url.
    public_key: String,
}

#[derive(Serialize)]
struct Enrolled {
    client_id: String,
}

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    body: bytes::Bytes,
) -> Result<Response, ApiFailure> {
    let asked: Enrol = parse(&body)?;
    let user: UserId = asked
        .user
        .parse()
        .map_err(|e| TransportError::Malformed(format!("user: {e}")))?;
    if user.domain() != state.config.domain {
        let unknown =
            HubError::UnknownUser(format!("{user} is not a user of {}", state.config.domain));
        return Err(TransportError::Service(unknown.into()).into());
    }
    let client = ClientId::new(&user, &asked.device)
        .map_err(|e| TransportError::Malformed(format!("device: {e}")))?;
    let public_key = unbase64("public_key", &asked.public_key)?;
    let usable = <[u8; 32]>::try_from(public_key.as_slice())
        .ok()
        .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok());
    if usable.is_none() {
        return Err(TransportError::Malformed("public_key: not an Ed25519 key".into()).into());
    }
    let store = state.service.store();
    let secret_sha256: [u8; 32] = Sha256::digest(asked.secret.as_bytes()).into();
    match store
        .enrol_client(
            secret_sha256,
            client.as_str().to_owned(),
            user.as_str().to_owned(),
            public_key,
            state.clock.now(),
        )
        .await
    {
        Ok(()) => Ok(json(
            StatusCode::OK,
            &Enrolled {
                client_id: client.as_str().to_owned(),
            },
        )),
        // Which of the reasons it was is not told: the secret is the
        // credential here.
        Err(StoreError::Conflict) => Err(TransportError::Authentication(
            "the enrolment secret is not good for this user and device (unknown, spent or \
             expired, or the device name is taken)"
                .into(),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Makes a one-time enrolment secret for a new client of `user`, good for
/// `valid_for` seconds from `now`, and records its hash (what `mimid user
/// invite` prints and the demo hands its devices). Returns the secret.
pub async fn invite<S: Store>(
    store: &S,
    user: &UserId,
    valid_for: u64,
    now: u64,
) -> Result<String, TransportError> {
    use base64::Engine as _;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| TransportError::Internal(format!("randomness: {e}")))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    store
        .add_enrolment(
            Sha256::digest(secret.as_bytes()).into(),
            user.to_string(),
            now.saturating_add(valid_for),
            now,
        )
        .await?;
    Ok(secret)
}
