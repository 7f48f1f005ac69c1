//! `/verification_key` (`docs/protocol.md` section 8): unsigned; answers
//! this provider's keys, current first. A GET without a body is answered
//! the same way.

use std::sync::Arc;

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use mimid_store::Store;
use mimid_wire::{VerificationKeyRequest, VerificationKeyResponse, VerificationKeyResult, Wire};

use super::{AppState, Endpoint, Failure, Unsigned, ok_body};
use crate::error::TransportError;

pub(super) async fn handle<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: Unsigned,
) -> Result<Response, Failure> {
    let fail = |e: TransportError| Failure::new(Some(Endpoint::VerificationKey), e);
    if !(request.method == Method::GET && request.body.is_empty()) {
        let asked = VerificationKeyRequest::decode_exact(&request.body, &state.config.limits)
            .map_err(|e| fail(e.into()))?;
        if asked.provider != state.config.domain {
            return Err(fail(TransportError::WrongRecipient(format!(
                "this is {}, not {}",
                state.config.domain, asked.provider
            ))));
        }
    }
    Ok(ok_body(
        Endpoint::VerificationKey,
        VerificationKeyResponse {
            version: 1,
            result: VerificationKeyResult::Ok(
                state.keys.get().verification_key_ok(&state.config.domain),
            ),
        }
        .to_bytes(),
    ))
}
