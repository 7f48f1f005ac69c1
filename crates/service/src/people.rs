//! KeyPackages against a store (`docs/protocol.md` 9): this provider's
//! clients publish them; other providers fetch them for this provider's
//! users, a connection KeyPackage from anyone, a regular one only for a
//! requester the user has a connection with. The checks are the core's
//! ([`mimid_core::people`]); a one-time package is handed out once.

use mimid_core::HubError;
use mimid_core::people::{check_published, check_request};
use mimid_store::{KeyPackageKind, PublishedKeyPackage, Store};
use mimid_wire::{ClientId, KeyPackage, KeyPackagesOk, ProviderDomain, UserId};

use crate::ServiceError;

/// Tuning of KeyPackages.
#[derive(Clone, Debug)]
pub struct PeopleConfig {
    /// A published KeyPackage must stay valid at least this long (seconds).
    pub min_lifetime: u64,
}

impl Default for PeopleConfig {
    fn default() -> Self {
        PeopleConfig { min_lifetime: 3600 }
    }
}

/// A provider's KeyPackages and the requests for them.
#[derive(Clone, Debug)]
pub struct People {
    domain: ProviderDomain,
    config: PeopleConfig,
}

impl People {
    pub fn new(domain: ProviderDomain, config: PeopleConfig) -> Self {
        People { domain, config }
    }

    /// Stores KeyPackages that `client`, a client of this provider,
    /// publishes at `now`: all of them, or none if one is refused.
    pub async fn publish<S: Store>(
        &self,
        store: &S,
        client: &ClientId,
        packages: &[KeyPackage],
        now: u64,
    ) -> Result<(), ServiceError> {
        let id = client.as_str().to_owned();
        let known = client.domain() == self.domain
            && store
                .known_clients(std::slice::from_ref(&id))
                .await?
                .first()
                .copied()
                .unwrap_or(false);
        if !known {
            return Err(HubError::UnknownClient(format!(
                "{client} is not a client of {}",
                self.domain
            ))
            .into());
        }
        let packages = packages
            .iter()
            .map(|kp| {
                let checked = check_published(client, kp, now, self.config.min_lifetime)?;
                Ok(PublishedKeyPackage {
                    kind: if checked.connection {
                        KeyPackageKind::Connection
                    } else {
                        KeyPackageKind::Regular
                    },
                    last_resort: checked.last_resort,
                    not_after: checked.not_after,
                    key_package: kp.as_bytes().to_vec(),
                })
            })
            .collect::<Result<Vec<_>, HubError>>()?;
        store.publish_key_packages(id, packages, now).await?;
        Ok(())
    }

    /// Answers `authenticated`'s request, for its user `requester`, for
    /// one KeyPackage of `kind` per client of `target` (of those in
    /// `clients`, if any are named).
    #[allow(clippy::too_many_arguments)]
    pub async fn key_packages<S: Store>(
        &self,
        store: &S,
        authenticated: &ProviderDomain,
        kind: KeyPackageKind,
        requester: &UserId,
        target: &UserId,
        clients: &[ClientId],
        now: u64,
    ) -> Result<KeyPackagesOk, ServiceError> {
        check_request(&self.domain, authenticated, requester, target, clients)?;
        if !store.user_exists(target.as_str()).await? {
            return Err(HubError::UnknownUser(format!("no user {target}")).into());
        }
        // A user's own clients need no connection to add each other.
        if kind == KeyPackageKind::Regular
            && requester != target
            && !store.connected(target.as_str(), requester.as_str()).await?
        {
            return Err(HubError::NotConnected(format!(
                "{target} has no connection with {requester}"
            ))
            .into());
        }
        let named =
            (!clients.is_empty()).then(|| clients.iter().map(|c| c.as_str().to_owned()).collect());
        let claimed = store
            .claim_key_packages(
                uuid::Uuid::now_v7().into_bytes(),
                target.as_str().to_owned(),
                kind,
                named,
                now,
            )
            .await?;
        if claimed.is_empty() {
            return Err(HubError::NoKeyPackages(format!(
                "no client of {target} has a KeyPackage left"
            ))
            .into());
        }
        let key_packages = claimed
            .iter()
            .map(|(_, bytes)| KeyPackage::from_bytes(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HubError::Internal(format!("a stored KeyPackage: {e}")))?;
        Ok(KeyPackagesOk {
            target: target.clone(),
            key_packages,
        })
    }
}
