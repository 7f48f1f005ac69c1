//! The certificate this provider presents, replaceable while it serves
//! (`mimid serve` reloads it on SIGHUP): the server's and the client's
//! rustls configurations ask the slot at each handshake, so a new
//! connection gets the certificate in the slot and an established one
//! keeps the one it was made with.

use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ClientHello;
use rustls::sign::CertifiedKey;

use crate::tls::TlsError;

/// A certificate chain and its key, swapped as a whole.
#[derive(Debug)]
pub struct CertSlot {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertSlot {
    /// A slot holding `chain` (leaf first) and its `key`, checked to match.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        Ok(CertSlot {
            current: RwLock::new(certified(chain, key)?),
        })
    }

    /// Puts `chain` and `key` in the slot for the handshakes to come, once
    /// they are checked; on an error the slot keeps what it has.
    pub fn replace(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), TlsError> {
        let next = certified(chain, key)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }

    /// The chain and key handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// When the leaf certificate expires (seconds since the Unix epoch),
    /// for the operator's metrics; `None` if it cannot be read.
    pub fn not_after(&self) -> Option<i64> {
        use x509_parser::prelude::{FromDer as _, X509Certificate};
        let current = self.current();
        let leaf = current.cert.first()?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
        Some(cert.validity().not_after.timestamp())
    }
}

/// The chain and key as rustls signs with them; the key must be the
/// leaf's (a mismatch would fail every handshake).
fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::Config("no certificate".into()));
    }
    CertifiedKey::from_der(chain, key, &crate::tls::provider())
        .map(Arc::new)
        .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))
}

impl rustls::server::ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for CertSlot {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
