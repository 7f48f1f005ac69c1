//! Provider authentication (`docs/protocol.md` section 4): by signature,
//! by mutual TLS, or both, chosen per deployment with per-peer overrides.
//!
//! The one output is [`Authenticated`], which only [`Authenticator`] can
//! build: a handler that holds one knows which provider sent the request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::HeaderMap;
use mimid_core::{Ed25519Check, SignerKey};
use mimid_service::BatchVerifier;
use mimid_wire::{
    Limits, ProviderDomain, ProviderKeyAlgorithm, ProviderSignature, VerificationKey,
};
use rustls::pki_types::CertificateDer;

use crate::client::TransportClient;
use crate::clock::Clock;
use crate::error::TransportError;
use crate::signature::{PROVIDER_SIGNATURE_HEADER, SENDER_HEADER, SignedRequest, decode_header};

/// How a peer authenticates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// The `MIMI-Provider-Signature` header.
    #[default]
    Signature,
    /// A TLS client certificate naming the sender.
    Mtls,
    /// Both, on every request.
    Both,
}

impl AuthMode {
    pub fn signature(self) -> bool {
        matches!(self, AuthMode::Signature | AuthMode::Both)
    }
    pub fn mtls(self) -> bool {
        matches!(self, AuthMode::Mtls | AuthMode::Both)
    }
}

/// The deployment's mode and per-peer overrides.
#[derive(Clone, Debug, Default)]
pub struct PeerModes {
    pub default: AuthMode,
    pub peers: HashMap<ProviderDomain, AuthMode>,
}

impl PeerModes {
    pub fn mode_for(&self, peer: &ProviderDomain) -> AuthMode {
        self.peers.get(peer).copied().unwrap_or(self.default)
    }
    /// Some peer may need a client certificate.
    pub fn any_mtls(&self) -> bool {
        self.default.mtls() || self.peers.values().any(|m| m.mtls())
    }
}

/// Settings of provider authentication on the server.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub modes: PeerModes,
    /// Largest accepted `|now - timestamp|`, and the grace around a key's
    /// validity (300 s).
    pub max_skew: u64,
    /// How long a `(sender, nonce)` is remembered (600 s).
    pub replay_window: u64,
    /// Most nonces remembered; when full, requests get 503 until the
    /// oldest expire (1,000,000).
    pub replay_capacity: usize,
    /// Least time between two key fetches for one sender (60 s).
    pub refetch_interval: u64,
    /// Most senders whose keys are cached (10,000).
    pub max_senders: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            modes: PeerModes::default(),
            max_skew: 300,
            replay_window: 600,
            replay_capacity: 1_000_000,
            refetch_interval: 60,
            max_senders: 10_000,
        }
    }
}

/// A provider that proved who it is. Only [`Authenticator`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    domain: ProviderDomain,
    /// The verified signature's nonce and until when it must be
    /// remembered (none for a request authenticated by mTLS alone).
    nonce: Option<([u8; 16], u64)>,
}

impl Authenticated {
    pub fn domain(&self) -> &ProviderDomain {
        &self.domain
    }

    /// The verified signature's nonce and the end of its replay window, for
    /// a replay check shared by the processes of one provider
    /// (`Store::remember_nonce`).
    pub fn nonce(&self) -> Option<([u8; 16], u64)> {
        self.nonce
    }
}

/// The TLS client certificate chain of a connection, set by the accept
/// loop on every request of that connection.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificates(pub(crate) Option<Arc<Vec<CertificateDer<'static>>>>);

impl PeerCertificates {
    /// The chain a TLS handshake verified against the trust anchors (an
    /// accept loop of one's own sets it on each request of the
    /// connection; [`Authenticator`] checks only the name it carries).
    pub fn verified(chain: Option<Vec<CertificateDer<'static>>>) -> Self {
        PeerCertificates(chain.map(Arc::new))
    }

    fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.as_ref().and_then(|chain| chain.first())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn fail(reason: impl Into<String>) -> TransportError {
    TransportError::Authentication(reason.into())
}

/// `(sender, nonce)` pairs seen in the replay window, expiring in order;
/// senders are providers, or clients of the client API.
pub(crate) struct ReplayCache<K = ProviderDomain> {
    seen: HashMap<(K, [u8; 16]), u64>,
    order: VecDeque<(u64, K, [u8; 16])>,
}

impl<K> Default for ReplayCache<K> {
    fn default() -> Self {
        ReplayCache {
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Clone + Eq + std::hash::Hash> ReplayCache<K> {
    fn expire(&mut self, now: u64) {
        while let Some((expires, _, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            if let Some((_, sender, nonce)) = self.order.pop_front() {
                self.seen.remove(&(sender, nonce));
            }
        }
    }

    /// Remembers a pair; `Err` when it was seen or the cache is full.
    pub(crate) fn remember(
        &mut self,
        sender: &K,
        nonce: [u8; 16],
        now: u64,
        window: u64,
        capacity: usize,
    ) -> Result<(), TransportError> {
        self.expire(now);
        let key = (sender.clone(), nonce);
        if self.seen.contains_key(&key) {
            return Err(fail("nonce already used (replay)"));
        }
        if self.seen.len() >= capacity {
            let retry_after = self
                .order
                .front()
                .map_or(1, |(expires, _, _)| expires.saturating_sub(now).max(1));
            return Err(TransportError::Unavailable {
                reason: "replay cache full".into(),
                retry_after: u32::try_from(retry_after).unwrap_or(u32::MAX),
            });
        }
        // Expiry is monotonic only if the clock is; a clock moved back
        // just keeps entries longer.
        let expires = now.saturating_add(window);
        self.seen.insert(key, expires);
        self.order.push_back((expires, sender.clone(), nonce));
        Ok(())
    }
}

/// A sender's key as fetched, and its public key decoded once.
#[derive(Clone)]
struct CachedKey {
    key: VerificationKey,
    /// `None` if it is no usable Ed25519 key (signatures by it are 401).
    signer: Option<SignerKey>,
}

impl CachedKey {
    fn new(key: VerificationKey) -> Self {
        let ProviderKeyAlgorithm::Ed25519 = key.algorithm;
        let signer = SignerKey::parse(&key.public_key.0);
        CachedKey { key, signer }
    }
}

/// One sender's cached keys.
#[derive(Default)]
struct SenderKeys {
    keys: HashMap<[u8; 8], CachedKey>,
    /// When keys were last fetched, and whether that fetch reached the
    /// sender.
    last_fetch: Option<(u64, bool)>,
}

/// Checks provider signatures and client certificates.
pub struct Authenticator {
    config: AuthConfig,
    domain: ProviderDomain,
    limits: Limits,
    clock: Arc<dyn Clock>,
    client: Arc<TransportClient>,
    /// Where signatures are checked in batches with other requests'
    /// (`None`: each alone).
    verifier: Option<Arc<BatchVerifier>>,
    replay: Mutex<ReplayCache>,
    senders: Mutex<HashMap<ProviderDomain, Arc<tokio::sync::Mutex<SenderKeys>>>>,
}

impl Authenticator {
    /// `client` fetches senders' keys (discovery, then `/verification_key`);
    /// `verifier` checks signatures in batches (the hub's, shared).
    pub fn new(
        config: AuthConfig,
        domain: ProviderDomain,
        limits: Limits,
        clock: Arc<dyn Clock>,
        client: Arc<TransportClient>,
        verifier: Option<Arc<BatchVerifier>>,
    ) -> Self {
        Authenticator {
            config,
            domain,
            limits,
            clock,
            client,
            verifier,
            replay: Mutex::new(ReplayCache::default()),
            senders: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates one request (its body already read in full).
    ///
    /// `gate` sees the claimed sender before its signature is checked (the
    /// costly part) and may refuse it: the server turns a provider whose
    /// rate limit refused it lately away there, since it would be refused
    /// after authentication anyway.
    pub async fn authenticate(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        certificates: &PeerCertificates,
        body: &[u8],
        gate: impl FnOnce(&ProviderDomain) -> Result<(), TransportError>,
    ) -> Result<Authenticated, TransportError> {
        let signature = match single_header(headers, PROVIDER_SIGNATURE_HEADER)? {
            Some(v) => {
                Some(decode_header(v.as_bytes(), &self.limits).map_err(TransportError::Malformed)?)
            }
            None => None,
        };
        let named = match single_header(headers, SENDER_HEADER)? {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.parse::<ProviderDomain>().ok())
                    .ok_or_else(|| {
                        TransportError::Malformed(format!("{SENDER_HEADER} is not a domain"))
                    })?,
            ),
            None => None,
        };
        let sender = match (&signature, named) {
            (Some(s), Some(n)) if s.sender != n => {
                return Err(fail(format!(
                    "{SENDER_HEADER} names {n}, the signature {}",
                    s.sender
                )));
            }
            (Some(s), _) => s.sender.clone(),
            (None, Some(n)) => n,
            (None, None) => self.sender_from_certificate(certificates)?,
        };
        let mode = self.config.modes.mode_for(&sender);
        if mode.mtls() {
            self.check_certificate(certificates, &sender)?;
        }
        let mut nonce = None;
        if mode.signature() {
            let signature =
                signature.ok_or_else(|| fail(format!("no {PROVIDER_SIGNATURE_HEADER} header")))?;
            gate(&sender)?;
            self.check_signature(&signature, method, path, body).await?;
            let expires = self.clock.now().saturating_add(self.config.replay_window);
            nonce = Some((signature.nonce, expires));
        }
        Ok(Authenticated {
            domain: sender,
            nonce,
        })
    }

    fn sender_from_certificate(
        &self,
        certificates: &PeerCertificates,
    ) -> Result<ProviderDomain, TransportError> {
        let leaf = certificates.leaf().ok_or_else(|| {
            fail(format!(
                "no {PROVIDER_SIGNATURE_HEADER}, no {SENDER_HEADER}, no client certificate"
            ))
        })?;
        let names = crate::tls::dns_names(leaf).map_err(fail)?;
        match names.as_slice() {
            [one] => one
                .parse()
                .map_err(|_| fail("the client certificate's name is no provider domain")),
            _ => Err(fail(format!(
                "the client certificate has {} DNS names and the request names no sender",
                names.len()
            ))),
        }
    }

    fn check_certificate(
        &self,
        certificates: &PeerCertificates,
        sender: &ProviderDomain,
    ) -> Result<(), TransportError> {
        // The chain was verified against the trust anchors in the handshake.
        let leaf = certificates
            .leaf()
            .ok_or_else(|| fail("no client certificate"))?;
        let names = crate::tls::dns_names(leaf).map_err(fail)?;
        if names.iter().any(|n| n == sender.as_str()) {
            Ok(())
        } else {
            Err(fail(format!("the client certificate is not for {sender}")))
        }
    }

    async fn check_signature(
        &self,
        signature: &ProviderSignature,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), TransportError> {
        let now = self.clock.now();
        if now.abs_diff(signature.timestamp) > self.config.max_skew {
            return Err(fail("timestamp outside the accepted window"));
        }
        let content = SignedRequest {
            sender: &signature.sender,
            recipient: &self.domain,
            method,
            path,
            body,
            timestamp: signature.timestamp,
            nonce: signature.nonce,
        }
        .content()
        .map_err(|e| fail(format!("cannot rebuild the signed content: {e}")))?;
        let cached = self.key(&signature.sender, signature.key_id, now).await?;
        let (key, skew) = (&cached.key, self.config.max_skew);
        if now.saturating_add(skew) < key.not_before || now > key.not_after.saturating_add(skew) {
            return Err(fail("the signing key is not valid now"));
        }
        let signer = cached
            .signer
            .ok_or_else(|| fail("the signing key is no usable Ed25519 key"))?;
        let check = Ed25519Check::new(&signer, &signature.signature.0, content)
            .ok_or_else(|| fail("bad signature length"))?;
        let valid = match &self.verifier {
            Some(verifier) => match verifier.verify_ed25519(check).await {
                Some((_, valid)) => valid,
                None => return Err(fail("the signature could not be checked")),
            },
            None => check.verify(),
        };
        if !valid {
            return Err(fail("bad provider signature"));
        }
        // Only a verified request reaches the replay cache.
        lock(&self.replay).remember(
            &signature.sender,
            signature.nonce,
            now,
            self.config.replay_window,
            self.config.replay_capacity,
        )
    }

    fn sender_slot(
        &self,
        sender: &ProviderDomain,
        now: u64,
    ) -> Result<Arc<tokio::sync::Mutex<SenderKeys>>, TransportError> {
        let mut senders = lock(&self.senders);
        if let Some(slot) = senders.get(sender) {
            return Ok(slot.clone());
        }
        if senders.len() >= self.config.max_senders {
            // Drop senders with nothing valid cached and no recent fetch.
            let (interval, skew) = (self.config.refetch_interval, self.config.max_skew);
            senders.retain(|_, slot| {
                slot.try_lock().map_or(true, |s| {
                    s.keys
                        .values()
                        .any(|k| now <= k.key.not_after.saturating_add(skew))
                        || s.last_fetch
                            .is_some_and(|(at, _)| now < at.saturating_add(interval))
                })
            });
            if senders.len() >= self.config.max_senders {
                return Err(TransportError::Unavailable {
                    reason: "too many senders".into(),
                    retry_after: u32::try_from(interval).unwrap_or(u32::MAX),
                });
            }
        }
        let slot = Arc::new(tokio::sync::Mutex::new(SenderKeys::default()));
        senders.insert(sender.clone(), slot.clone());
        Ok(slot)
    }

    /// The sender's key `key_id`: cached, or fetched (at most once per
    /// `refetch_interval` per sender).
    async fn key(
        &self,
        sender: &ProviderDomain,
        key_id: [u8; 8],
        now: u64,
    ) -> Result<CachedKey, TransportError> {
        let slot = self.sender_slot(sender, now)?;
        let mut keys = slot.lock().await;
        let skew = self.config.max_skew;
        keys.keys
            .retain(|_, k| now <= k.key.not_after.saturating_add(skew));
        if let Some(key) = keys.keys.get(&key_id) {
            return Ok(key.clone());
        }
        if let Some((at, reached)) = keys.last_fetch {
            let next = at.saturating_add(self.config.refetch_interval);
            if now < next {
                return Err(if reached {
                    fail("unknown key id")
                } else {
                    TransportError::Unavailable {
                        reason: format!("the keys of {sender} could not be fetched"),
                        retry_after: u32::try_from(next - now).unwrap_or(u32::MAX),
                    }
                });
            }
        }
        match self.client.fetch_keys(sender).await {
            Ok(ok) => {
                keys.last_fetch = Some((now, true));
                // `fetch_keys` refuses an answer for another provider.
                keys.keys = ok
                    .keys
                    .into_iter()
                    .filter(|k| now <= k.not_after.saturating_add(skew))
                    .map(|k| (k.key_id, CachedKey::new(k)))
                    .collect();
                keys.keys
                    .get(&key_id)
                    .cloned()
                    .ok_or_else(|| fail("unknown key id"))
            }
            Err(e) if e.is_unreachable() => {
                keys.last_fetch = Some((now, false));
                tracing::info!(%sender, error = %e, "cannot fetch provider keys");
                Err(TransportError::Unavailable {
                    reason: format!("the keys of {sender} could not be fetched"),
                    retry_after: u32::try_from(self.config.refetch_interval).unwrap_or(u32::MAX),
                })
            }
            Err(e) => {
                keys.last_fetch = Some((now, true));
                Err(fail(format!("the keys of {sender} were refused: {e}")))
            }
        }
    }
}

/// The value of a header a request may carry at most once (twice: 400).
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h http::HeaderValue>, TransportError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => Err(TransportError::Malformed(format!(
            "more than one {name} header"
        ))),
        (value, _) => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_expires_and_is_bounded() {
        let a: ProviderDomain = "a.example".parse().unwrap();
        let mut cache = ReplayCache::default();
        cache.remember(&a, [1; 16], 0, 600, 2).unwrap();
        assert!(cache.remember(&a, [1; 16], 599, 600, 2).is_err());
        cache.remember(&a, [2; 16], 10, 600, 2).unwrap();
        // Full: 503 until the first entry expires.
        match cache.remember(&a, [3; 16], 20, 600, 2) {
            Err(TransportError::Unavailable { retry_after, .. }) => assert_eq!(retry_after, 580),
            other => panic!("{other:?}"),
        }
        cache.remember(&a, [3; 16], 600, 600, 2).unwrap();
        // [1] expired at 600 and may be seen again (its timestamp cannot be
        // within the window any more).
        assert_eq!(cache.seen.len(), 2);
    }
}
