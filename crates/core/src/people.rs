//! KeyPackages and their requests (`docs/protocol.md` 9), sans-IO: what a
//! provider checks of a KeyPackage one of its clients publishes, and of a
//! request another provider makes for its users' KeyPackages. The caller
//! looks up and commits the rest (the user, the connection, the packages).

use mimid_wire::{
    CONNECTION_KEY_PACKAGE_EXTENSION, ClientId, KeyPackage, LAST_RESORT_EXTENSION, ProviderDomain,
    UserId,
};
use openmls::prelude::{Ciphersuite, ExtensionType, ProtocolVersion};
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;

use crate::error::HubError;
use crate::state::client_of_credential;

/// The ciphersuite KeyPackages are accepted for: the profile's mandatory
/// one (`docs/protocol.md` 1.2), which every hub hosts.
pub const KEY_PACKAGE_CIPHERSUITE: Ciphersuite =
    Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// A published KeyPackage that passed [`check_published`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedKeyPackage {
    /// Marked `mimi_connection_key_package`.
    pub connection: bool,
    /// Marked `last_resort`.
    pub last_resort: bool,
    /// End of its lifetime, seconds since the Unix epoch.
    pub not_after: u64,
}

/// Checks a KeyPackage that `client` publishes to its own provider at
/// `now`: valid by RFC 9420 (signatures, lifetime, keys; OpenMLS), of the
/// profile's ciphersuite, its credential the client's own ClientID, and not
/// ending within `min_lifetime` seconds (a package nobody could use in
/// time is refused rather than stored).
pub fn check_published(
    client: &ClientId,
    key_package: &KeyPackage,
    now: u64,
    min_lifetime: u64,
) -> Result<CheckedKeyPackage, HubError> {
    let provider = OpenMlsRustCrypto::default();
    let valid = key_package
        .parsed()
        .clone()
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(|e| HubError::InvalidMls(format!("KeyPackage: {e:?}")))?;
    if valid.ciphersuite() != KEY_PACKAGE_CIPHERSUITE {
        return Err(HubError::InvalidMls(format!(
            "KeyPackage of ciphersuite {:?}: only {KEY_PACKAGE_CIPHERSUITE:?} is served",
            valid.ciphersuite()
        )));
    }
    let owner = client_of_credential(valid.leaf_node().credential())
        .map_err(|e| HubError::InvalidMls(format!("KeyPackage: {e}")))?;
    if &owner != client {
        return Err(HubError::NotAllowed(format!(
            "a KeyPackage of {owner} published by {client}"
        )));
    }
    let not_after = valid.life_time().not_after();
    if not_after < now.saturating_add(min_lifetime) {
        return Err(HubError::InvalidMls(format!(
            "KeyPackage expires at {not_after}, within {min_lifetime} s of now ({now})"
        )));
    }
    let extensions = valid.extensions();
    Ok(CheckedKeyPackage {
        connection: extensions
            .unknown(CONNECTION_KEY_PACKAGE_EXTENSION)
            .is_some(),
        last_resort: extensions.contains(ExtensionType::LastResort)
            || extensions.unknown(LAST_RESORT_EXTENSION).is_some(),
        not_after,
    })
}

/// The checks of 9 that need nothing stored, on a request for `target`'s
/// KeyPackages that `authenticated` made for its user `requester`:
/// `target` is this provider's (421 `wrong_recipient`), `requester` the
/// sending provider's (403), and each named client `target`'s (400).
pub fn check_request(
    domain: &ProviderDomain,
    authenticated: &ProviderDomain,
    requester: &UserId,
    target: &UserId,
    clients: &[ClientId],
) -> Result<(), HubError> {
    if &target.domain() != domain {
        return Err(HubError::WrongRecipient(format!(
            "{target} is not a user of {domain}"
        )));
    }
    if &requester.domain() != authenticated {
        return Err(HubError::NotAllowed(format!(
            "{authenticated} asks for {requester}, a user of another provider"
        )));
    }
    if let Some(c) = clients.iter().find(|c| &c.user() != target) {
        return Err(HubError::Malformed(format!(
            "{c} is not a client of {target}"
        )));
    }
    Ok(())
}

/// The ClientID a fetched KeyPackage is for (its credential's identity),
/// which the fetching side checks is a client of the user it asked for (9).
pub fn owner_of(key_package: &KeyPackage) -> Result<ClientId, HubError> {
    client_of_credential(&key_package.parsed().unverified_credential().credential)
        .map_err(|e| HubError::InvalidMls(format!("KeyPackage: {e}")))
}
