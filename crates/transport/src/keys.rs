//! This provider's signing keys (`docs/protocol.md` section 8) and their
//! file format.
//!
//! A key file is a small TOML document (written by `mimid keygen`):
//!
//! ```toml
//! algorithm = "ed25519"
//! secret_key = "<base64url without padding of the 32-byte Ed25519 seed>"
//! not_before = 1795000000   # seconds since the Unix epoch
//! not_after = 1826536000
//! ```
//!
//! A provider is configured with its keys in order: the current one first,
//! then the next one during a rotation. `/verification_key` lists all of
//! them in that order; requests are signed with the first.

use std::path::Path;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use mimid_wire::{ProviderDomain, ProviderKeyAlgorithm, VerificationKey, VerificationKeyOk};

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("no provider key configured")]
    NoKeys,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    algorithm: String,
    secret_key: String,
    not_before: u64,
    not_after: u64,
}

/// One Ed25519 provider key with its validity.
#[derive(Clone)]
pub struct ProviderKey {
    signing: SigningKey,
    public: VerificationKey,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKey")
            .field("key_id", &mimid_wire::hex_string(&self.public.key_id))
            .field("not_before", &self.public.not_before)
            .field("not_after", &self.public.not_after)
            .finish_non_exhaustive()
    }
}

impl ProviderKey {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32], not_before: u64, not_after: u64) -> Result<Self, String> {
        if not_before > not_after {
            return Err("not_before is after not_after".into());
        }
        let signing = SigningKey::from_bytes(&seed);
        let public = VerificationKey::new(
            ProviderKeyAlgorithm::Ed25519,
            signing.verifying_key().to_bytes().to_vec(),
            not_before,
            not_after,
        )
        .map_err(|e| e.to_string())?;
        Ok(ProviderKey { signing, public })
    }

    /// A fresh random key.
    pub fn generate(not_before: u64, not_after: u64) -> Result<Self, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
        ProviderKey::from_seed(seed, not_before, not_after)
    }

    /// The public half as `/verification_key` lists it.
    pub fn verification_key(&self) -> &VerificationKey {
        &self.public
    }

    pub fn key_id(&self) -> [u8; 8] {
        self.public.key_id
    }

    /// Signs `message` (Ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The key file's text.
    pub fn to_toml(&self) -> String {
        let file = KeyFile {
            algorithm: "ed25519".into(),
            secret_key: URL_SAFE_NO_PAD.encode(self.signing.to_bytes()),
            not_before: self.public.not_before,
            not_after: self.public.not_after,
        };
        format!(
            "# mimid provider key (docs/operations.md, \"Provider keys\"). Keep it secret.\n{}",
            toml::to_string(&file).unwrap_or_default()
        )
    }

    /// Parses a key file's text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.algorithm != "ed25519" {
            return Err(format!("unsupported algorithm {:?}", file.algorithm));
        }
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(file.secret_key.trim())
            .map_err(|e| format!("secret_key: {e}"))?
            .try_into()
            .map_err(|_| "secret_key must be 32 bytes".to_string())?;
        ProviderKey::from_seed(seed, file.not_before, file.not_after)
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        ProviderKey::from_toml(&text).map_err(|reason| KeyFileError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Writes a key file, readable by its owner only; an existing file is
    /// never overwritten.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write as _;
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(self.to_toml().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

/// This provider's keys as the server (`/verification_key`) and the client
/// (signing) share them: replaced as a whole while requests are served
/// (`mimid serve` reloads the key files on SIGHUP); each use takes the set
/// in force at that moment.
#[derive(Clone, Debug)]
pub struct KeyRing(Arc<RwLock<Arc<ProviderKeys>>>);

impl KeyRing {
    pub fn new(keys: ProviderKeys) -> Self {
        KeyRing(Arc::new(RwLock::new(Arc::new(keys))))
    }

    /// The keys in force.
    pub fn get(&self) -> Arc<ProviderKeys> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `keys` in force for every holder of this ring.
    pub fn replace(&self, keys: ProviderKeys) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
    }
}

impl From<ProviderKeys> for KeyRing {
    fn from(keys: ProviderKeys) -> Self {
        KeyRing::new(keys)
    }
}

/// This provider's keys: the current one first, then the next.
#[derive(Clone, Debug)]
pub struct ProviderKeys(Vec<ProviderKey>, ProviderKey);

impl ProviderKeys {
    pub fn new(keys: Vec<ProviderKey>) -> Result<Self, KeyFileError> {
        let current = keys.first().cloned().ok_or(KeyFileError::NoKeys)?;
        Ok(ProviderKeys(keys, current))
    }

    /// Reads key files, the current key's first.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Self, KeyFileError> {
        ProviderKeys::new(
            paths
                .iter()
                .map(|p| ProviderKey::load(p.as_ref()))
                .collect::<Result<_, _>>()?,
        )
    }

    /// The key requests are signed with.
    pub fn current(&self) -> &ProviderKey {
        &self.1
    }

    pub fn all(&self) -> &[ProviderKey] {
        &self.0
    }

    /// The `ok` arm of this provider's `/verification_key` answer.
    pub fn verification_key_ok(&self, provider: &ProviderDomain) -> VerificationKeyOk {
        VerificationKeyOk {
            provider: provider.clone(),
            keys: self.0.iter().map(|k| k.public.clone()).collect(),
        }
    }
}
