//! The client API of a client's own provider (`docs/client-api.md`): enrol
//! with the secret the operator handed out, then publish KeyPackages,
//! connect, submit DS requests, and read and acknowledge the queue, every
//! request signed with the key the client enrolled with.
//!
//! ```no_run
//! # async fn demo(http: reqwest::Client) -> Result<(), mimid_client::api::ApiError> {
//! use mimid_client::api::{ProviderApi, SigningKey};
//! let key = SigningKey::generate()?;
//! let api = ProviderApi::enrol(
//!     http,
//!     "https://a.example",
//!     "a.example",
//!     "secret from the operator",
//!     &"mimi://a.example/u/alice".parse().expect("a UserID"),
//!     "phone",
//!     key,
//! )
//! .await?;
//! let queued = api.queue(0, 25).await?.messages;
//! if let Some(last) = queued.last() {
//!     api.acknowledge(last.seq).await?;
//! }
//! # Ok(()) }
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use mimid_wire::client_api::{
    CLIENT_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, client_request_content,
};
use mimid_wire::{
    ClientId, DSRequest, DSRequestBody, DSResponse, DSResponseBody, KeyPackage, Limits, UserId,
    Wire,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a client API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The provider could not be reached, or the exchange broke off.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The provider refused: HTTP status, error code name and message.
    #[error("refused ({status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error code's name (`docs/protocol.md` section 10).
        code: String,
        /// What the provider said.
        message: String,
        /// The `WWW-Authenticate` value of a refusal that asks for a
        /// Privacy Pass token (`privacy_pass_required`), if it has one:
        /// the challenges of the provider that asked.
        challenge: Option<String>,
    },
    /// The provider's answer is not what the API defines.
    #[error("unexpected answer: {0}")]
    Answer(String),
    /// No randomness for a key or a nonce.
    #[error("randomness: {0}")]
    Random(String),
}

/// The Ed25519 key a client signs its requests with.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    /// The public key only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", hex::encode(self.public_key()))
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, ApiError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| ApiError::Random(e.to_string()))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A key from its 32 secret bytes (as kept by the client).
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(secret))
    }

    /// The 32 secret bytes, to keep.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key the client enrols with.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }
}

/// One message of the client's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its position: acknowledge up to it once it is handled.
    pub seq: u64,
    /// The hub that delivered it.
    pub sender: String,
    /// The MLS `group_id`.
    pub group_id: Vec<u8>,
    /// The group's epoch the message belongs to.
    pub epoch: u64,
    /// The `MLSMessage`.
    pub message: Vec<u8>,
    /// When the provider stored it (seconds since the Unix epoch).
    pub received_at: u64,
}

/// A connection request waiting for the client's user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingConnection {
    /// Names it when settling it.
    pub id: i64,
    /// Who asks to connect.
    pub sender_user: UserId,
    /// The connection group's MLS `group_id`.
    pub group_id: Vec<u8>,
    /// The epoch the Welcome is for.
    pub epoch: u64,
    /// The Welcome into the connection group (`MLSMessage`).
    pub welcome: Vec<u8>,
    /// When the provider received it (seconds since the Unix epoch).
    pub received_at: u64,
}

/// What the user does with a connection request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Connect: the requester may then fetch the user's regular
    /// KeyPackages.
    Accept,
    /// Drop the request.
    Decline,
    /// Decline, and refuse the requester's later requests.
    Block,
}

#[derive(Deserialize)]
struct WireIncoming {
    id: i64,
    sender_user: String,
    group_id: String,
    epoch: u64,
    welcome: String,
    received_at: u64,
}

#[derive(Deserialize)]
struct Requests {
    requests: Vec<WireIncoming>,
}

#[derive(Deserialize)]
struct Submitted {
    response: String,
}

#[derive(Deserialize)]
struct Fetched {
    key_packages: Vec<String>,
}

/// An enrolled client's connection to its provider's client API (a clone
/// shares its HTTP connections).
#[derive(Clone, Debug)]
pub struct ProviderApi {
    http: reqwest::Client,
    base: String,
    provider: String,
    client: ClientId,
    key: SigningKey,
}

#[derive(Serialize)]
struct Enrol<'a> {
    secret: &'a str,
    user: &'a str,
    device: &'a str,
    public_key: String,
}

#[derive(Deserialize)]
struct Enrolled {
    client_id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct WireQueued {
    seq: u64,
    sender: String,
    group_id: String,
    epoch: u64,
    message: String,
    received_at: u64,
}

#[derive(Deserialize)]
struct Messages {
    messages: Vec<WireQueued>,
    #[serde(default)]
    low_key_packages: Vec<String>,
}

/// A read of the queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueRead {
    /// Oldest first.
    pub messages: Vec<QueuedMessage>,
    /// The client has few one-time KeyPackages of this kind left (or no
    /// last-resort one): time to publish more.
    pub low_connection_key_packages: bool,
    /// The same for regular (group) KeyPackages.
    pub low_regular_key_packages: bool,
}

fn unbase64(value: &str) -> Result<Vec<u8>, ApiError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| ApiError::Answer(format!("not base64url: {e}")))
}

/// The answer's body if it is a success, else the provider's refusal.
async fn answer(response: reqwest::Response) -> Result<bytes::Bytes, ApiError> {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await?;
    if status == 200 {
        return Ok(body);
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => Err(ApiError::Refused {
            status,
            code: e.code,
            message: e.message,
            challenge,
        }),
        Err(_) => Err(ApiError::Refused {
            status,
            code: String::new(),
            message: String::from_utf8_lossy(&body).into_owned(),
            challenge,
        }),
    }
}

/// The challenge of a refusal that asks for a Privacy Pass token.
fn privacy_pass_challenge(e: &ApiError) -> Option<&str> {
    match e {
        ApiError::Refused {
            code,
            challenge: Some(challenge),
            ..
        } if code == "privacy_pass_required" => Some(challenge),
        _ => None,
    }
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Answer(e.to_string()))
}

impl ProviderApi {
    /// Enrols a new client `device` of `user` at the provider whose client
    /// API is at `base` (`https://host[:port]`) and whose domain is
    /// `provider`, with the operator's one-time `secret`.
    pub async fn enrol(
        http: reqwest::Client,
        base: &str,
        provider: &str,
        secret: &str,
        user: &UserId,
        device: &str,
        key: SigningKey,
    ) -> Result<ProviderApi, ApiError> {
        let body = serde_json::to_vec(&Enrol {
            secret,
            user: user.as_str(),
            device,
            public_key: URL_SAFE_NO_PAD.encode(key.public_key()),
        })
        .map_err(|e| ApiError::Answer(e.to_string()))?;
        let response = http
            .post(format!("{base}/client/v1/enrol"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let enrolled: Enrolled = json(&answer(response).await?)?;
        let client = enrolled
            .client_id
            .parse()
            .map_err(|e| ApiError::Answer(format!("client_id: {e}")))?;
        Ok(ProviderApi {
            http,
            base: base.to_owned(),
            provider: provider.to_owned(),
            client,
            key,
        })
    }

    /// A client enrolled before, with its key.
    pub fn resume(
        http: reqwest::Client,
        base: &str,
        provider: &str,
        client: ClientId,
        key: SigningKey,
    ) -> ProviderApi {
        ProviderApi {
            http,
            base: base.to_owned(),
            provider: provider.to_owned(),
            client,
            key,
        }
    }

    /// The ClientID the provider knows this client by.
    pub fn client_id(&self) -> &ClientId {
        &self.client
    }

    /// Sends a request signed with the client's key.
    async fn signed(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<bytes::Bytes, ApiError> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| ApiError::Random(e.to_string()))?;
        let body_sha256: [u8; 32] = Sha256::digest(&body).into();
        let content = client_request_content(
            &self.provider,
            self.client.as_str(),
            method.as_str(),
            path_and_query,
            timestamp,
            &nonce,
            &body_sha256,
        );
        let signature = self.key.0.sign(&content);
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .header(CLIENT_HEADER, self.client.as_str())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(NONCE_HEADER, hex::encode(nonce))
            .header(
                SIGNATURE_HEADER,
                URL_SAFE_NO_PAD.encode(signature.to_bytes()),
            );
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        answer(request.send().await?).await
    }

    /// Submits a DS request (made with [`crate::MimiClient`]) through the
    /// provider to the group's hub, on the endpoint its body belongs to;
    /// returns the hub's answer. A refusal of the hub (or of the provider,
    /// for a request that would act as another client) is
    /// [`ApiError::Refused`] with the hub's error code.
    ///
    /// ```no_run
    /// # async fn f(
    /// #     api: &mimid_client::api::ProviderApi,
    /// #     mls: &mut mimid_client::MimiClient,
    /// #     group: &mimid_wire::GroupId,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// let request = mls.send_message(group, b"hello")?;
    /// api.submit(&request).await?;
    /// // A commit is merged once the hub took it.
    /// let update = mls.update(group)?;
    /// api.submit(&update).await?;
    /// mls.merge_pending_commit(group)?;
    /// # Ok(()) }
    /// ```
    pub async fn submit(&self, request: &DSRequest) -> Result<DSResponseBody, ApiError> {
        let endpoint = match request.request_body {
            DSRequestBody::WelcomeInformation(_) => "welcome_information",
            DSRequestBody::ExternalCommitInformation(_) => "external_commit_information",
            _ => "group_operation",
        };
        let encoded = request
            .to_bytes()
            .map_err(|e| ApiError::Answer(format!("request: {e}")))?;
        let body = serde_json::to_vec(&serde_json::json!({
            "request": URL_SAFE_NO_PAD.encode(encoded),
        }))
        .map_err(|e| ApiError::Answer(e.to_string()))?;
        let path = format!("/client/v1/ds/{endpoint}");
        let answer: Submitted = json(&self.signed(reqwest::Method::POST, &path, body).await?)?;
        let response = DSResponse::decode_exact(&unbase64(&answer.response)?, &Limits::default())
            .map_err(|e| ApiError::Answer(format!("response: {e}")))?;
        Ok(response.response_body)
    }

    /// Publishes KeyPackages (all stored, or none).
    pub async fn publish_key_packages(&self, packages: &[KeyPackage]) -> Result<(), ApiError> {
        let encoded: Vec<String> = packages
            .iter()
            .map(|kp| URL_SAFE_NO_PAD.encode(kp.as_bytes()))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "key_packages": encoded }))
            .map_err(|e| ApiError::Answer(e.to_string()))?;
        self.signed(reqwest::Method::POST, "/client/v1/key_packages", body)
            .await
            .map(|_| ())
    }

    /// The queue after position `after` (and after what was acknowledged),
    /// waiting up to `wait` seconds (at most 25) for a message if there is
    /// none yet.
    pub async fn queue(&self, after: u64, wait: u64) -> Result<QueueRead, ApiError> {
        let path = format!("/client/v1/queue?after={after}&wait={wait}");
        let body = self.signed(reqwest::Method::GET, &path, Vec::new()).await?;
        let read: Messages = json(&body)?;
        let low = |kind: &str| read.low_key_packages.iter().any(|k| k == kind);
        Ok(QueueRead {
            low_connection_key_packages: low("connection"),
            low_regular_key_packages: low("regular"),
            messages: read
                .messages
                .into_iter()
                .map(|m| {
                    Ok(QueuedMessage {
                        seq: m.seq,
                        sender: m.sender,
                        group_id: unbase64(&m.group_id)?,
                        epoch: m.epoch,
                        message: unbase64(&m.message)?,
                        received_at: m.received_at,
                    })
                })
                .collect::<Result<_, ApiError>>()?,
        })
    }

    /// One KeyPackage per client of `target` (on any provider), through
    /// this client's provider: connection packages (`connection`), or
    /// regular ones, which `target` serves only once it has a connection
    /// with this client's user; `clients` narrows them to those clients.
    ///
    /// When `target`'s provider asks for a Privacy Pass token and this
    /// client's provider is an issuer it accepts, the client gets a token
    /// from it and asks once more with it ([`ProviderApi::token_for`]).
    pub async fn fetch_key_packages(
        &self,
        target: &UserId,
        connection: bool,
        clients: &[ClientId],
    ) -> Result<Vec<KeyPackage>, ApiError> {
        let mut asked = serde_json::json!({
            "target": target.as_str(),
            "kind": if connection { "connection" } else { "regular" },
            "clients": clients.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        });
        let body = self
            .with_token("/client/v1/key_packages/fetch", &mut asked)
            .await?;
        let fetched: Fetched = json(&body)?;
        fetched
            .key_packages
            .iter()
            .map(|kp| {
                KeyPackage::from_bytes(&unbase64(kp)?)
                    .map_err(|e| ApiError::Answer(format!("KeyPackage: {e}")))
            })
            .collect()
    }

    /// Asks `target` to connect, with the Welcome into the connection group
    /// (MLS `group_id`, its epoch). Once `target`'s provider has it, this
    /// user has a connection with `target`.
    ///
    /// ```no_run
    /// # use mimid_wire::{DSRequestBody, GroupId, GroupIdField, GroupKind};
    /// # async fn f(
    /// #     api: &mimid_client::api::ProviderApi,
    /// #     mls: &mut mimid_client::MimiClient,
    /// #     request_group_id: &mimid_wire::DSRequest,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// let bob = "mimi://b.example/u/bob".parse()?;
    /// let kps = api.fetch_key_packages(&bob, true, &[]).await?;
    /// let mimid_wire::DSResponseBody::GroupId(GroupIdField(group)) =
    ///     api.submit(request_group_id).await?
    /// else {
    ///     return Err("no group id".into());
    /// };
    /// api.submit(&mls.create_group(&group, GroupKind::Connection)?).await?;
    /// let add = mls.add(&group, &kps, false)?;
    /// api.submit(&add).await?;
    /// mls.merge_pending_commit(&group)?;
    /// let DSRequestBody::AddUsers(body) = &add.request_body else { unreachable!() };
    /// let welcome = body.welcome_messages[0].as_bytes();
    /// api.connect(&bob, &group.to_mls_bytes(), 1, welcome).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(
        &self,
        target: &UserId,
        group_id: &[u8],
        epoch: u64,
        welcome: &[u8],
    ) -> Result<(), ApiError> {
        let mut asked = serde_json::json!({
            "target": target.as_str(),
            "group_id": URL_SAFE_NO_PAD.encode(group_id),
            "epoch": epoch,
            "welcome": URL_SAFE_NO_PAD.encode(welcome),
        });
        self.with_token("/client/v1/connect", &mut asked)
            .await
            .map(|_| ())
    }

    /// POSTs `asked` to `path`; if the answer asks for a Privacy Pass
    /// token that this client's provider can issue, POSTs it once more
    /// with one (`privacy_pass_token`).
    async fn with_token(
        &self,
        path: &str,
        asked: &mut serde_json::Value,
    ) -> Result<bytes::Bytes, ApiError> {
        let body = serde_json::to_vec(asked).map_err(|e| ApiError::Answer(e.to_string()))?;
        let refusal = match self.signed(reqwest::Method::POST, path, body).await {
            Ok(body) => return Ok(body),
            Err(e) => e,
        };
        let Some(challenge) = privacy_pass_challenge(&refusal) else {
            return Err(refusal);
        };
        let Some(token) = self.token_for(challenge).await? else {
            return Err(refusal);
        };
        asked["privacy_pass_token"] = URL_SAFE_NO_PAD.encode(token).into();
        let body = serde_json::to_vec(asked).map_err(|e| ApiError::Answer(e.to_string()))?;
        self.signed(reqwest::Method::POST, path, body).await
    }

    /// This client's provider's Privacy Pass issuer: its name and
    /// `token_key` (DER SubjectPublicKeyInfo). Refused 404 when the
    /// provider is no issuer.
    pub async fn privacy_pass_issuer(&self) -> Result<(String, Vec<u8>), ApiError> {
        #[derive(serde::Deserialize)]
        struct Issuer {
            issuer_name: String,
            token_key: String,
        }
        let body = self
            .signed(
                reqwest::Method::GET,
                "/client/v1/privacy_pass/issuer",
                Vec::new(),
            )
            .await?;
        let issuer: Issuer = json(&body)?;
        Ok((issuer.issuer_name, unbase64(&issuer.token_key)?))
    }

    /// A Privacy Pass token (an encoded RFC 9578 token of type 2) for one
    /// of the challenges in `challenge` (a `WWW-Authenticate` value), made
    /// with this client's provider as the issuer: the client blinds the
    /// token request, the provider signs it, the client finalizes it, so
    /// the provider never sees the token. `None` when the provider is no
    /// issuer or no challenge names its key.
    pub async fn token_for(&self, challenge: &str) -> Result<Option<Vec<u8>>, ApiError> {
        use privacypass::auth::authenticate::parse_www_authenticate_header;
        use privacypass::public_tokens::{PublicKey, TokenRequest, TokenResponse};
        use privacypass::{Deserialize as _, Serialize as _};
        let bad = |what: &str, e: &dyn std::fmt::Display| ApiError::Answer(format!("{what}: {e}"));
        let (_, token_key) = match self.privacy_pass_issuer().await {
            Ok(issuer) => issuer,
            Err(ApiError::Refused { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let value =
            reqwest::header::HeaderValue::from_str(challenge).map_err(|e| bad("challenge", &e))?;
        let challenges = parse_www_authenticate_header(&value).map_err(|e| bad("challenge", &e))?;
        let Some(ours) = challenges.iter().find(|c| c.token_key() == token_key) else {
            return Ok(None);
        };
        let public_key = PublicKey::from_spki(&token_key).map_err(|e| bad("token_key", &e))?;
        // The thread's generator is not `Send`: it is dropped before the
        // request is sent.
        let (request, state) = {
            let mut rng = blind_rsa_signatures::reexports::rand::rng();
            TokenRequest::new(&mut rng, public_key, ours.token_challenge())
                .map_err(|e| bad("token request", &e))?
        };
        let request = request
            .tls_serialize_detached()
            .map_err(|e| bad("token request", &e))?;
        let response = self.privacy_pass_token(&request).await?;
        let token = TokenResponse::tls_deserialize_exact(&response)
            .map_err(|e| bad("token response", &e))?
            .issue_token(&state)
            .map_err(|e| bad("token response", &e))?;
        token
            .tls_serialize_detached()
            .map(Some)
            .map_err(|e| bad("token", &e))
    }

    /// Has this client's provider, as a Privacy Pass issuer, sign an RFC
    /// 9578 `TokenRequest` (type 2, encoded); returns the encoded
    /// `TokenResponse`, from which the client finalizes its token
    /// (`docs/protocol.md` 3.6). Refused 404 when the provider is no
    /// issuer, 429 over the client's issuance limit.
    pub async fn privacy_pass_token(&self, token_request: &[u8]) -> Result<Vec<u8>, ApiError> {
        #[derive(serde::Deserialize)]
        struct Issued {
            token_response: String,
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "token_request": URL_SAFE_NO_PAD.encode(token_request),
        }))
        .map_err(|e| ApiError::Answer(e.to_string()))?;
        let body = self
            .signed(
                reqwest::Method::POST,
                "/client/v1/privacy_pass/token-request",
                body,
            )
            .await?;
        let issued: Issued = json(&body)?;
        unbase64(&issued.token_response)
    }

    /// The connection requests waiting for this client's user.
    pub async fn connection_requests(&self) -> Result<Vec<IncomingConnection>, ApiError> {
        let body = self
            .signed(
                reqwest::Method::GET,
                "/client/v1/connection_requests",
                Vec::new(),
            )
            .await?;
        let requests: Requests = json(&body)?;
        requests
            .requests
            .into_iter()
            .map(|r| {
                Ok(IncomingConnection {
                    id: r.id,
                    sender_user: r
                        .sender_user
                        .parse()
                        .map_err(|e| ApiError::Answer(format!("sender_user: {e}")))?,
                    group_id: unbase64(&r.group_id)?,
                    epoch: r.epoch,
                    welcome: unbase64(&r.welcome)?,
                    received_at: r.received_at,
                })
            })
            .collect()
    }

    /// Settles connection request `id` for the user.
    pub async fn settle_connection_request(
        &self,
        id: i64,
        decision: Decision,
    ) -> Result<(), ApiError> {
        let decision = match decision {
            Decision::Accept => "accept",
            Decision::Decline => "decline",
            Decision::Block => "block",
        };
        let body = serde_json::to_vec(&serde_json::json!({ "id": id, "decision": decision }))
            .map_err(|e| ApiError::Answer(e.to_string()))?;
        self.signed(
            reqwest::Method::POST,
            "/client/v1/connection_requests/settle",
            body,
        )
        .await
        .map(|_| ())
    }

    /// Acknowledges the queue up to position `up_to`: those messages are
    /// not read again.
    pub async fn acknowledge(&self, up_to: u64) -> Result<(), ApiError> {
        let body = serde_json::to_vec(&serde_json::json!({ "up_to": up_to }))
            .map_err(|e| ApiError::Answer(e.to_string()))?;
        self.signed(reqwest::Method::POST, "/client/v1/ack", body)
            .await
            .map(|_| ())
    }
}
