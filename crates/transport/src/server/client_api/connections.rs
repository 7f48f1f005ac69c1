//! Connections through the client API (`docs/client-api.md`): fetch
//! another user's KeyPackages (through this provider, from theirs), ask a
//! user to connect (this provider sends the `/connection_request`, and
//! records the connection once it is accepted for delivery), and list and
//! settle the requests this client's user received.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use mimid_store::{Decision, KeyPackageKind, Store, StoreError};
use mimid_wire::{
    ClientId, ConnectionKeyPackageRequest, ConnectionKeyPackageResponse, ConnectionRequest,
    GroupId, GroupIdField, GroupKeyPackageRequest, GroupKeyPackageResponse, KeyPackagesOk,
    KeyPackagesResult, MessageId, QueueingServicePayload, QueueingServiceRequest,
    QueueingServiceResponse, QueueingServiceResult, UserId, WelcomeMessage, Wire,
};
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::auth::ClientSigned;
use super::{ApiFailure, base64, json, parse, unbase64};
use crate::error::TransportError;

fn malformed(field: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Malformed(format!("{field}: {e}"))
}

#[derive(Deserialize)]
struct Fetch {
    target: String,
    /// `connection` or `regular`.
    kind: String,
    #[serde(default)]
    clients: Vec<String>,
    /// A Privacy Pass token for `target`'s provider (base64url), if it
    /// asks for one.
    privacy_pass_token: Option<String>,
}

#[derive(Serialize)]
struct Fetched {
    key_packages: Vec<String>,
}

/// `POST /client/v1/key_packages/fetch`: one KeyPackage per client of
/// `target` (of `clients`, if named), from `target`'s provider, for this
/// client's user; each checked to be of a client of `target`.
pub(super) async fn fetch<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let asked: Fetch = parse(&request.body)?;
    let target: UserId = asked.target.parse().map_err(|e| malformed("target", e))?;
    let kind = match asked.kind.as_str() {
        "connection" => KeyPackageKind::Connection,
        "regular" => KeyPackageKind::Regular,
        other => return Err(malformed("kind", format!("{other:?}")).into()),
    };
    let clients = asked
        .clients
        .iter()
        .map(|c| c.parse::<ClientId>().map_err(|e| malformed("clients", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let requester = request.client.user();
    let domain = &state.config.domain;
    let token = token_header(asked.privacy_pass_token.as_deref())?;
    let ok = if &target.domain() == domain {
        state
            .people
            .key_packages(
                state.service.store(),
                domain,
                kind,
                &requester,
                &target,
                &clients,
                state.clock.now(),
            )
            .await
            .map_err(TransportError::from)?
    } else {
        remote_key_packages(&state, kind, requester, &target, clients, token).await?
    };
    let mut key_packages = Vec::with_capacity(ok.key_packages.len());
    for kp in &ok.key_packages {
        let owner = mimid_core::people::owner_of(kp)?;
        if owner.user() != target {
            return Err(TransportError::Peer {
                provider: target.domain().to_string(),
                error: mimid_wire::DSError::text(
                    mimid_wire::ErrorCode::InvalidMlsMessage,
                    format!("a KeyPackage of {owner} for {target}"),
                ),
            }
            .into());
        }
        key_packages.push(base64(kp.as_bytes()));
    }
    Ok(json(StatusCode::OK, &Fetched { key_packages }))
}

async fn remote_key_packages<S: Store>(
    state: &AppState<S>,
    kind: KeyPackageKind,
    requester: UserId,
    target: &UserId,
    clients: Vec<ClientId>,
    token: Option<HeaderValue>,
) -> Result<KeyPackagesOk, TransportError> {
    let provider = target.domain();
    let (path, body) = match kind {
        KeyPackageKind::Connection => (
            "/connection_key_packages",
            ConnectionKeyPackageRequest {
                version: mimid_wire::PROTOCOL_VERSION,
                requester,
                target: target.clone(),
            }
            .to_bytes(),
        ),
        KeyPackageKind::Regular => (
            "/group_key_packages",
            GroupKeyPackageRequest {
                version: mimid_wire::PROTOCOL_VERSION,
                requester,
                target: target.clone(),
                clients,
            }
            .to_bytes(),
        ),
    };
    let body = body.map_err(|e| TransportError::Internal(e.to_string()))?;
    let reply = state
        .client
        .post_with_token(&provider, path, body, token)
        .await
        .map_err(|e| unreachable_peer(&provider, e))?;
    let limits = &state.config.limits;
    let result = match kind {
        KeyPackageKind::Connection => {
            ConnectionKeyPackageResponse::decode_exact(&reply.body, limits).map(|r| r.result)
        }
        KeyPackageKind::Regular => {
            GroupKeyPackageResponse::decode_exact(&reply.body, limits).map(|r| r.result)
        }
    };
    match result {
        Ok(KeyPackagesResult::Ok(ok)) if reply.status == 200 && &ok.target == target => Ok(ok),
        Ok(KeyPackagesResult::Error(error)) => Err(refused(&provider, error, reply)),
        _ => Err(bad_answer(&provider, reply.status)),
    }
}

/// The `Authorization` value of a client's Privacy Pass token, if it sent
/// one.
fn token_header(token: Option<&str>) -> Result<Option<HeaderValue>, TransportError> {
    token
        .map(|t| crate::privacy_pass::authorization(&unbase64("privacy_pass_token", t)?))
        .transpose()
}

/// A peer's refusal, passed on to the client: with the peer's Privacy Pass
/// challenge when it asks for a token, so that the client can get one
/// for it and ask again (`docs/client-api.md`).
fn refused(
    provider: &mimid_wire::ProviderDomain,
    error: mimid_wire::DSError,
    reply: crate::client::Reply,
) -> TransportError {
    match reply.challenge {
        Some(challenge)
            if reply.status == 401 && error.code == mimid_wire::ErrorCode::PrivacyPassRequired =>
        {
            TransportError::PrivacyPassRequired {
                reason: format!("{provider}: {error}"),
                challenge,
            }
        }
        _ => TransportError::Peer {
            provider: provider.to_string(),
            error,
        },
    }
}

fn unreachable_peer(
    provider: &mimid_wire::ProviderDomain,
    e: impl std::fmt::Display,
) -> TransportError {
    TransportError::Unavailable {
        reason: format!("{provider}: {e}"),
        retry_after: 5,
    }
}

fn bad_answer(provider: &mimid_wire::ProviderDomain, status: u16) -> TransportError {
    TransportError::Unavailable {
        reason: format!("{provider} answered HTTP {status} without the answer expected"),
        retry_after: 5,
    }
}

#[derive(Deserialize)]
struct Connect {
    target: String,
    /// The connection group's MLS `group_id`, base64url.
    group_id: String,
    epoch: u64,
    /// The Welcome into it (`MLSMessage`), base64url.
    welcome: String,
    /// A Privacy Pass token for `target`'s provider (base64url), if it
    /// asks for one.
    privacy_pass_token: Option<String>,
}

/// `POST /client/v1/connect`: asks `target` to connect with this client's
/// user, with the Welcome into their connection group. Once `target`'s
/// provider has accepted the request, this user has a connection with
/// `target` (it asked: `target` may fetch its regular KeyPackages).
pub(super) async fn connect<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let asked: Connect = parse(&request.body)?;
    let target: UserId = asked.target.parse().map_err(|e| malformed("target", e))?;
    let group_id = GroupId::from_mls_bytes(&unbase64("group_id", &asked.group_id)?)
        .map_err(|e| malformed("group_id", e))?;
    let welcome = WelcomeMessage::from_bytes(&unbase64("welcome", &asked.welcome)?)
        .map_err(|e| malformed("welcome", e))?;
    let token = token_header(asked.privacy_pass_token.as_deref())?;
    let user = request.client.user();
    let provider = target.domain();
    let domain = &state.config.domain;
    let message = QueueingServiceRequest {
        version: mimid_wire::PROTOCOL_VERSION,
        sender: domain.clone(),
        recipient: provider.clone(),
        message_id: MessageId(uuid::Uuid::now_v7().into_bytes()),
        payload: QueueingServicePayload::ConnectionRequest(ConnectionRequest {
            sender_user: user.clone(),
            recipient_user: target.clone(),
            group_id: GroupIdField(group_id),
            epoch: asked.epoch,
            welcome,
        }),
    };
    if &provider == domain {
        state
            .guest
            .connection_request(state.service.store(), domain, &message, state.clock.now())
            .await
            .map_err(TransportError::from)?;
    } else {
        let body = message
            .to_bytes()
            .map_err(|e| TransportError::Internal(e.to_string()))?;
        let reply = state
            .client
            .post_with_token(&provider, "/connection_request", body, token)
            .await
            .map_err(|e| unreachable_peer(&provider, e))?;
        match QueueingServiceResponse::decode_exact(&reply.body, &state.config.limits) {
            Ok(QueueingServiceResponse {
                result: QueueingServiceResult::Ok(_),
                message_id,
                ..
            }) if reply.status == 200 && message_id == message.message_id => {}
            Ok(QueueingServiceResponse {
                result: QueueingServiceResult::Error(error),
                ..
            }) => return Err(refused(&provider, error, reply).into()),
            _ => return Err(bad_answer(&provider, reply.status).into()),
        }
    }
    state
        .service
        .store()
        .add_connection(
            user.as_str().to_owned(),
            target.as_str().to_owned(),
            state.clock.now(),
        )
        .await?;
    Ok(json(StatusCode::OK, &serde_json::json!({})))
}

#[derive(Serialize)]
struct Waiting {
    id: i64,
    sender_user: String,
    group_id: String,
    epoch: u64,
    welcome: String,
    received_at: u64,
}

#[derive(Serialize)]
struct Requests {
    requests: Vec<Waiting>,
}

/// `GET /client/v1/connection_requests`: those waiting for this client's
/// user, oldest first.
pub(super) async fn list<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let user = request.client.user();
    let requests = state
        .service
        .store()
        .connection_requests(user.as_str())
        .await?
        .into_iter()
        .map(|r| Waiting {
            id: r.id,
            sender_user: r.sender_user,
            group_id: base64(&r.group_id),
            epoch: r.epoch,
            welcome: base64(&r.welcome),
            received_at: r.received_at,
        })
        .collect();
    Ok(json(StatusCode::OK, &Requests { requests }))
}

#[derive(Deserialize)]
struct Settle {
    id: i64,
    /// `accept`, `decline` or `block`.
    decision: String,
}

/// `POST /client/v1/connection_requests/settle`: the user accepts (the
/// requester may then fetch its regular KeyPackages), declines, or blocks
/// (later requests of the requester are refused, 403 `blocked`).
pub(super) async fn settle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: ClientSigned,
) -> Result<Response, ApiFailure> {
    let asked: Settle = parse(&request.body)?;
    let decision = match asked.decision.as_str() {
        "accept" => Decision::Accept,
        "decline" => Decision::Decline,
        "block" => Decision::Block,
        other => return Err(malformed("decision", format!("{other:?}")).into()),
    };
    let user = request.client.user();
    match state
        .service
        .store()
        .settle_connection_request(
            user.as_str().to_owned(),
            asked.id,
            decision,
            state.clock.now(),
        )
        .await
    {
        Ok(()) => Ok(json(StatusCode::OK, &serde_json::json!({}))),
        Err(StoreError::Conflict) => Err(TransportError::NotFound.into()),
        Err(e) => Err(e.into()),
    }
}
