//! Privacy Pass (`docs/protocol.md` 3.6): the RFC 9577 `PrivateToken`
//! HTTP authentication scheme with RFC 9578 publicly verifiable tokens
//! (token type `0x0002`, blind RSA, RSABSSA-SHA384-PSS-Deterministic,
//! 2048-bit keys), by the `privacypass` crate.
//!
//! - An endpoint named in the settings needs a token: a request without a
//!   valid one is answered 401 `privacy_pass_required` with a
//!   `WWW-Authenticate: PrivateToken challenge=..., token-key=...` per
//!   accepted issuer.
//! - The challenge is the same for every request: token type 2, the
//!   issuer's name, no redemption context, and this provider's domain as
//!   the origin; a token made for it is good once, on any guarded endpoint.
//! - A token is verified (signature by an accepted issuer's key, challenge
//!   digest of that issuer's challenge) before anything is recorded, so a
//!   forged token burns nothing; then it is spent in the store
//!   ([`mimid_store::Store::spend_token`]), once for every process sharing
//!   it.
//! - mimid is an issuer for its own clients too (`POST
//!   /client/v1/privacy_pass/token-request`), with a key file made by
//!   `mimid privacy-pass keygen`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use blind_rsa_signatures::{Deterministic, KeyPair, PSS, Sha384};
use privacypass::auth::authenticate::{TokenChallenge, build_www_authenticate_header};
use privacypass::auth::authorize::{build_authorization_header, parse_authorization_header};
use privacypass::common::errors::RedeemTokenError;
use privacypass::public_tokens::server::{
    IssuerKeyStore, IssuerServer, OriginKeyStore, OriginServer,
};
use privacypass::public_tokens::{
    PublicKey, PublicToken, TokenRequest, public_key_to_truncated_token_key_id,
};
use privacypass::{Deserialize as _, Serialize as _, TokenType, TruncatedTokenKeyId};
use sha2::{Digest, Sha256};

use crate::error::TransportError;
use crate::server::Endpoint;

/// An issuer's key pair (RSABSSA-SHA384-PSS-Deterministic).
type Pair = KeyPair<Sha384, PSS, Deterministic>;

/// The token type mimid issues and accepts (RFC 9578 publicly verifiable,
/// blind RSA).
pub const TOKEN_TYPE: u16 = 2;

/// Bits of an issuer key: token type 2 has a 256-byte authenticator.
const KEY_BITS: usize = 2048;

/// Longest issuer name (it is carried in every challenge).
const MAX_ISSUER_NAME: usize = 255;

/// Why Privacy Pass settings, or an issuer key file, cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyPassError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(String),
    #[error("issuer {name:?}: {reason}")]
    Issuer { name: String, reason: String },
}

/// The key of this provider's own issuer: its secret half signs the
/// token requests of its clients, its public half (`token-key`) is what
/// origins configure to accept its tokens.
#[derive(Clone)]
pub struct IssuerKey {
    pair: Pair,
    /// The public key, DER SubjectPublicKeyInfo (RSASSA-PSS, RFC 9578).
    token_key: Vec<u8>,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("token_key_id", &hex::encode(self.token_key_id()))
            .finish_non_exhaustive()
    }
}

impl IssuerKey {
    /// A new random 2048-bit key.
    pub fn generate() -> Result<Self, PrivacyPassError> {
        let mut rng = blind_rsa_signatures::reexports::rand::rng();
        let pair = Pair::generate(&mut rng, KEY_BITS)
            .map_err(|e| PrivacyPassError::Key(format!("cannot make a key: {e}")))?;
        IssuerKey::from_pair(pair)
    }

    fn from_pair(pair: Pair) -> Result<Self, PrivacyPassError> {
        let token_key = pair
            .pk
            .to_spki()
            .map_err(|e| PrivacyPassError::Key(format!("cannot encode the public key: {e}")))?;
        if pair.pk.components().n().len() != KEY_BITS / 8 {
            return Err(PrivacyPassError::Key(format!(
                "the key is not of {KEY_BITS} bits"
            )));
        }
        Ok(IssuerKey { pair, token_key })
    }

    /// The key from PEM (PKCS#8 `PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, PrivacyPassError> {
        let sk = blind_rsa_signatures::SecretKey::from_pem(pem)
            .map_err(|e| PrivacyPassError::Key(format!("not an RSA private key: {e}")))?;
        let pk = sk
            .public_key()
            .map_err(|e| PrivacyPassError::Key(format!("unusable RSA key: {e}")))?;
        IssuerKey::from_pair(Pair { pk, sk })
    }

    /// The key as PEM (PKCS#8).
    pub fn to_pem(&self) -> Result<String, PrivacyPassError> {
        self.pair
            .sk
            .to_pem()
            .map_err(|e| PrivacyPassError::Key(format!("cannot encode the key: {e}")))
    }

    /// Reads a key file (`mimid privacy-pass keygen`).
    pub fn load(path: &Path) -> Result<Self, PrivacyPassError> {
        let pem = std::fs::read_to_string(path).map_err(|source| PrivacyPassError::Io {
            path: path.display().to_string(),
            source,
        })?;
        IssuerKey::from_pem(&pem)
    }

    /// Writes a new key file, readable by its owner only; never overwrites
    /// a file.
    pub fn save(&self, path: &Path) -> Result<(), PrivacyPassError> {
        use std::io::Write as _;
        let io = |source| PrivacyPassError::Io {
            path: path.display().to_string(),
            source,
        };
        let pem = self.to_pem()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The public key as RFC 9578 encodes it (`token-key`): DER
    /// SubjectPublicKeyInfo, RSASSA-PSS with SHA-384.
    pub fn token_key(&self) -> &[u8] {
        &self.token_key
    }

    /// SHA-256 of [`IssuerKey::token_key`], as tokens name their key.
    pub fn token_key_id(&self) -> [u8; 32] {
        Sha256::digest(&self.token_key).into()
    }
}

/// An issuer whose tokens are accepted: its name (as its challenges carry
/// it) and its public key.
#[derive(Clone, Debug)]
pub struct Issuer {
    name: String,
    public_key: PublicKey,
    token_key: Vec<u8>,
}

impl Issuer {
    /// `token_key`: the issuer's public key, DER SubjectPublicKeyInfo
    /// (RSASSA-PSS, 2048 bits), as its directory and its challenges give it.
    pub fn new(name: &str, token_key: &[u8]) -> Result<Self, PrivacyPassError> {
        let bad = |reason: String| PrivacyPassError::Issuer {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty()
            || name.len() > MAX_ISSUER_NAME
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        {
            return Err(bad(format!(
                "the name must be 1..={MAX_ISSUER_NAME} printable ASCII characters, no comma"
            )));
        }
        let public_key = PublicKey::from_spki(token_key)
            .map_err(|e| bad(format!("token_key is no RSASSA-PSS public key: {e}")))?;
        if public_key.components().n().len() != KEY_BITS / 8 {
            return Err(bad(format!("token_key is not of {KEY_BITS} bits")));
        }
        Ok(Issuer {
            name: name.to_owned(),
            public_key,
            token_key: token_key.to_vec(),
        })
    }

    /// This provider's own issuer, named `name`.
    pub fn own(name: &str, key: &IssuerKey) -> Result<Self, PrivacyPassError> {
        Issuer::new(name, key.token_key())
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What the server needs to check tokens and to issue them.
#[derive(Clone, Debug, Default)]
pub struct PrivacyPassSettings {
    /// The endpoints that need a token (none: Privacy Pass is off).
    pub endpoints: Vec<Endpoint>,
    /// This provider's own issuer: its name and key (its tokens are
    /// accepted too), for the client API's issuance endpoint.
    pub issuer: Option<(String, IssuerKey)>,
    /// Other issuers whose tokens are accepted.
    pub issuers: Vec<Issuer>,
    /// Tokens one client may be issued (per second, burst).
    pub issuance: Option<crate::ratelimit::Rate>,
}

/// The public keys of one issuer, as the crate's origin looks them up.
struct OriginKeys(Vec<PublicKey>);

#[async_trait::async_trait]
impl OriginKeyStore for OriginKeys {
    async fn insert(&self, _: TruncatedTokenKeyId, _: PublicKey) {}

    async fn get(&self, truncated_token_key_id: &TruncatedTokenKeyId) -> Vec<PublicKey> {
        self.0
            .iter()
            .filter(|k| {
                public_key_to_truncated_token_key_id(k).ok() == Some(*truncated_token_key_id)
            })
            .cloned()
            .collect()
    }

    async fn remove(&self, _: &TruncatedTokenKeyId) -> bool {
        false
    }
}

/// The crate's origin reserves a token's nonce before it verifies the
/// token and releases it after a failure. mimid verifies first and spends
/// the token in its store afterwards (a forged token burns nothing, and a
/// failure of the store is an error, not a "spent"), so the origin is
/// given a nonce store that holds nothing.
struct VerifyOnly;

#[async_trait::async_trait]
impl privacypass::NonceStore for VerifyOnly {
    async fn reserve(&self, _: &privacypass::Nonce) -> bool {
        true
    }
    async fn commit(&self, _: &privacypass::Nonce) {}
    async fn release(&self, _: &privacypass::Nonce) {}
}

/// This provider's own issuer key, as the crate's issuer looks it up.
struct IssuerKeys(TruncatedTokenKeyId, Pair);

#[async_trait::async_trait]
impl IssuerKeyStore for IssuerKeys {
    async fn insert(&self, _: TruncatedTokenKeyId, _: Pair) -> bool {
        false
    }

    async fn get(&self, truncated_token_key_id: &TruncatedTokenKeyId) -> Option<Pair> {
        (*truncated_token_key_id == self.0).then(|| self.1.clone())
    }

    async fn remove(&self, _: &TruncatedTokenKeyId) -> bool {
        false
    }
}

/// An accepted issuer's key and the digest of its challenge.
struct Accepted {
    issuer: String,
    keys: OriginKeys,
    challenge_digest: [u8; 32],
}

/// The `Authorization: PrivateToken token=...` value carrying `token` (an
/// encoded RFC 9578 token of type 2) on a request to another provider: a
/// client's token that its provider presents for it. Checked to be a token
/// of type 2, not verified (the receiver does that).
pub fn authorization(token: &[u8]) -> Result<HeaderValue, TransportError> {
    let token = PublicToken::tls_deserialize_exact(token)
        .map_err(|e| TransportError::Malformed(format!("privacy_pass_token: {e}")))?;
    if token.token_type() != TokenType::Public {
        return Err(TransportError::Malformed(
            "privacy_pass_token: not a token of type 2".into(),
        ));
    }
    build_authorization_header(&token)
        .map(|(_, value)| value)
        .map_err(|e| TransportError::Malformed(format!("privacy_pass_token: {e}")))
}

/// A verified token, not spent yet.
#[derive(Clone, Copy, Debug)]
pub struct Redeemed {
    pub token_key_id: [u8; 32],
    pub nonce: [u8; 32],
}

/// Privacy Pass of one server: which endpoints need a token, whose
/// tokens are accepted, and this provider's issuer.
pub struct PrivacyPass {
    guarded: Vec<Endpoint>,
    /// By token key id (SHA-256 of the issuer's `token-key`).
    accepted: HashMap<[u8; 32], Accepted>,
    /// `WWW-Authenticate`: a challenge per accepted issuer.
    challenge: HeaderValue,
    issuer: Option<IssuerKeys>,
    /// This provider's issuer: its name and `token-key`.
    own: Option<(String, Vec<u8>)>,
    issuance: Option<crate::ratelimit::Limiter<String>>,
}

impl std::fmt::Debug for PrivacyPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyPass")
            .field("guarded", &self.guarded)
            .field(
                "issuers",
                &self
                    .accepted
                    .values()
                    .map(|a| &a.issuer)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The challenge of `issuer` to an origin named `origin`.
fn challenge(issuer: &str, origin: &str) -> TokenChallenge {
    TokenChallenge::new(TokenType::Public, issuer, None, &[origin.to_owned()])
}

impl PrivacyPass {
    /// Privacy Pass of the provider `origin` (its domain, the challenges'
    /// origin); `None` when no endpoint needs a token and no issuer is
    /// configured.
    pub fn new(
        settings: &PrivacyPassSettings,
        origin: &mimid_wire::ProviderDomain,
    ) -> Result<Option<Arc<Self>>, PrivacyPassError> {
        if settings.endpoints.is_empty() && settings.issuer.is_none() {
            return Ok(None);
        }
        let mut issuers = Vec::new();
        if let Some((name, key)) = &settings.issuer {
            issuers.push(Issuer::own(name, key)?);
        }
        issuers.extend(settings.issuers.iter().cloned());
        if !settings.endpoints.is_empty() && issuers.is_empty() {
            return Err(PrivacyPassError::Key(
                "endpoints need a token but no issuer is configured".into(),
            ));
        }
        let mut accepted = HashMap::new();
        let mut challenges = Vec::new();
        for issuer in issuers {
            let bad = |reason: String| PrivacyPassError::Issuer {
                name: issuer.name.clone(),
                reason,
            };
            let challenge = challenge(&issuer.name, origin.as_str());
            let challenge_digest = challenge
                .digest()
                .map_err(|e| bad(format!("challenge: {e}")))?;
            let (_, value) = build_www_authenticate_header(&challenge, &issuer.token_key, None)
                .map_err(|e| bad(format!("challenge: {e}")))?;
            let value = value
                .to_str()
                .map_err(|e| bad(format!("challenge: {e}")))?
                .to_owned();
            let token_key_id: [u8; 32] = Sha256::digest(&issuer.token_key).into();
            if !challenges.contains(&value) {
                challenges.push(value);
            }
            accepted.insert(
                token_key_id,
                Accepted {
                    issuer: issuer.name.clone(),
                    keys: OriginKeys(vec![issuer.public_key.clone()]),
                    challenge_digest,
                },
            );
        }
        let challenge = HeaderValue::from_str(&challenges.join(", "))
            .map_err(|e| PrivacyPassError::Key(format!("challenge: {e}")))?;
        let issuer = match &settings.issuer {
            Some((_, key)) => Some(IssuerKeys(
                public_key_to_truncated_token_key_id(&key.pair.pk)
                    .map_err(|e| PrivacyPassError::Key(format!("issuer key: {e}")))?,
                key.pair.clone(),
            )),
            None => None,
        };
        let issuance = settings
            .issuance
            .and_then(|rate| crate::ratelimit::Limiter::new(rate, 100_000));
        Ok(Some(Arc::new(PrivacyPass {
            guarded: settings.endpoints.clone(),
            accepted,
            challenge,
            issuer,
            own: settings
                .issuer
                .as_ref()
                .map(|(name, key)| (name.clone(), key.token_key().to_vec())),
            issuance,
        })))
    }

    /// This provider's issuer, if it is one: its name and `token-key`.
    pub fn issuer(&self) -> Option<(&str, &[u8])> {
        self.own
            .as_ref()
            .map(|(name, key)| (name.as_str(), key.as_slice()))
    }

    /// Whether `endpoint` needs a token.
    pub fn guards(&self, endpoint: Option<Endpoint>) -> bool {
        endpoint.is_some_and(|e| self.guarded.contains(&e))
    }

    /// The `WWW-Authenticate` value of a refusal.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    fn required(&self, reason: impl Into<String>) -> TransportError {
        TransportError::PrivacyPassRequired {
            reason: reason.into(),
            challenge: self.challenge.clone(),
        }
    }

    /// Verifies the request's `Authorization: PrivateToken token=...`: a
    /// token of type 2 for the challenge of an accepted issuer, signed by
    /// that issuer's key. Nothing is recorded: [`PrivacyPass::spend`]
    /// does that.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<Redeemed, TransportError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter().filter(|v| {
            v.as_bytes()
                .get(..12)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"PrivateToken"))
        });
        let value = match (values.next(), values.next()) {
            (Some(value), None) => value,
            (None, _) => return Err(self.required("no PrivateToken authorization")),
            (Some(_), Some(_)) => return Err(self.required("more than one PrivateToken")),
        };
        let token: PublicToken = parse_authorization_header(value)
            .map_err(|e| self.required(format!("bad token: {e}")))?;
        if token.token_type() != TokenType::Public {
            return Err(self.required("not a token of type 2"));
        }
        let token_key_id = *token.token_key_id();
        let accepted = self
            .accepted
            .get(&token_key_id)
            .ok_or_else(|| self.required("a token of an issuer not accepted here"))?;
        if *token.challenge_digest() != accepted.challenge_digest {
            return Err(self.required("a token for another challenge"));
        }
        let nonce = token.nonce();
        OriginServer::new()
            .redeem_token(&accepted.keys, &VerifyOnly, token)
            .await
            .map_err(|e| match e {
                RedeemTokenError::DoubleSpending => self.required("token already spent"),
                other => self.required(format!("bad token: {other}")),
            })?;
        Ok(Redeemed {
            token_key_id,
            nonce,
        })
    }

    /// Spends a verified token: once in the store, for all processes.
    pub async fn spend<S: mimid_store::Store>(
        &self,
        store: &S,
        redeemed: Redeemed,
        now: u64,
    ) -> Result<(), TransportError> {
        match store
            .spend_token(redeemed.token_key_id, redeemed.nonce, now)
            .await
        {
            Ok(()) => Ok(()),
            Err(mimid_store::StoreError::Conflict) => Err(self.required("token already spent")),
            Err(e) => Err(e.into()),
        }
    }

    /// Signs a client's RFC 9578 `TokenRequest` (type 2) with this
    /// provider's issuer key: the `TokenResponse`, encoded.
    pub async fn issue(
        &self,
        client: &str,
        token_request: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        let keys = self.issuer.as_ref().ok_or(TransportError::NotFound)?;
        crate::ratelimit::take(&self.issuance, &client.to_owned(), "token issuance")?;
        let request = TokenRequest::tls_deserialize_exact(token_request)
            .map_err(|e| TransportError::Malformed(format!("token_request: {e}")))?;
        let response = IssuerServer::new()
            .issue_token_response(keys, request)
            .await
            .map_err(|e| TransportError::Malformed(format!("token_request: {e}")))?;
        response
            .tls_serialize_detached()
            .map_err(|e| TransportError::Internal(format!("token_response: {e}")))
    }
}
