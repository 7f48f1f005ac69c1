//! Where a DS request of one of this provider's own clients goes: to this
//! provider's hub for its own groups (and for new group ids), else over
//! HTTPS to the hub named in the group id, whose answer comes back
//! (`docs/protocol.md` 6; the guest side relays, the hub decides).

use mimid_core::{DsEndpoint, Origin, named_group};
use mimid_service::HubService;
use mimid_store::Store;
use mimid_wire::{DSError, DSRequest, DSResponseBody, ProviderDomain};

use crate::client::TransportClient;

/// Submits `request` for a client of `domain`, already authenticated as a
/// client of it; returns the hub's answer, or its refusal.
pub async fn submit<S: Store>(
    service: &HubService<S>,
    client: &TransportClient,
    domain: &ProviderDomain,
    endpoint: DsEndpoint,
    request: &DSRequest,
) -> Result<DSResponseBody, DSError> {
    let hub = match named_group(&request.request_body) {
        Ok(Some(group)) => group.hub_domain,
        Ok(None) => domain.clone(),
        Err(e) => return Err(e.to_ds_error()),
    };
    if &hub == domain {
        return service
            .handle(endpoint, request, Origin::Local)
            .await
            .map_err(|e| e.to_ds_error());
    }
    match client.ds_request(&hub, endpoint, request).await {
        Ok((_, response)) => match response.response_body {
            DSResponseBody::Error(e) => Err(e),
            body => Ok(body),
        },
        Err(e) => {
            tracing::info!(%hub, error = %e, "relaying to the hub failed");
            Err(DSError::unavailable(1))
        }
    }
}
