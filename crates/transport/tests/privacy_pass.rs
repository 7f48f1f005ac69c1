//! Privacy Pass over real HTTPS (`docs/protocol.md` 3.6): a.example
//! guards `/verification_key` and `/connection_key_packages`, is an issuer
//! for its own clients, and accepts the tokens of issuer.example too. A
//! request without a token is challenged (401 `privacy_pass_required` with
//! `WWW-Authenticate: PrivateToken ...`), a valid token is accepted once,
//! and a spent, forged or garbled token, a token for another origin and one
//! of an issuer not configured are refused, each having spent nothing.

mod common;

use axum::http::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use common::*;
use mimid_client::api::{ApiError, ProviderApi, SigningKey};
use mimid_store::Store;
use mimid_transport::auth::AuthMode;
use mimid_transport::privacy_pass::{Issuer, IssuerKey, PrivacyPass, PrivacyPassSettings};
use mimid_transport::ratelimit::Rate;
use mimid_transport::signature::PROVIDER_SIGNATURE_HEADER;
use mimid_transport::{Endpoint, ProviderKey};
use mimid_wire::{
    ConnectionKeyPackageRequest, ConnectionKeyPackageResponse, ErrorCode, KeyPackagesResult,
    Limits, UserId, VerificationKeyResponse, VerificationKeyResult, Wire,
};
use privacypass::auth::authenticate::{TokenChallenge, parse_www_authenticate_header};
use privacypass::auth::authorize::build_authorization_header;
use privacypass::public_tokens::{PublicKey, PublicToken, TokenRequest, TokenResponse};
use privacypass::{Deserialize as _, Serialize as _, TokenType};
use sha2::{Digest, Sha256};

const OCTET: &str = "application/octet-stream";
const ALICE: &str = "mimi://a.example/u/alice";

/// a.example's issuer key, issuer.example's (accepted by a.example) and
/// rogue.example's (not configured anywhere).
struct Keys {
    own: IssuerKey,
    other: IssuerKey,
    rogue: IssuerKey,
}

fn keys() -> Keys {
    Keys {
        own: IssuerKey::generate().unwrap(),
        other: IssuerKey::generate().unwrap(),
        rogue: IssuerKey::generate().unwrap(),
    }
}

fn settings(keys: &Keys) -> PrivacyPassSettings {
    PrivacyPassSettings {
        endpoints: vec![Endpoint::VerificationKey, Endpoint::ConnectionKeyPackages],
        issuer: Some(("a.example".into(), keys.own.clone())),
        issuers: vec![Issuer::new("issuer.example", keys.other.token_key()).unwrap()],
        issuance: Some(Rate {
            per_second: 1,
            burst: 20,
        }),
    }
}

/// A standalone issuer named `name` with `key` (the same code as a.example's
/// issuance endpoint), for the tokens of issuer.example and rogue.example.
fn issuer(name: &str, key: &IssuerKey) -> std::sync::Arc<PrivacyPass> {
    PrivacyPass::new(
        &PrivacyPassSettings {
            issuer: Some((name.into(), key.clone())),
            ..PrivacyPassSettings::default()
        },
        &domain("issuer.invalid"),
    )
    .unwrap()
    .unwrap()
}

async fn federation(keys: &Keys) -> Federation {
    let mut a = Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature);
    a.privacy_pass = Some(settings(keys));
    Federation::new(&[
        a,
        Setup::new("b.example", [127, 0, 0, 3], AuthMode::Signature),
    ])
    .await
}

/// An answer: status, error code (`None` for a success), the
/// `WWW-Authenticate` value.
type Answer = (u16, Option<ErrorCode>, Option<HeaderValue>);

/// `GET /verification_key` on a.example, with `authorization` if given.
async fn verification_key(f: &Federation, authorization: Option<&HeaderValue>) -> Answer {
    let mut request = f.raw_client(None).get(format!(
        "https://{}/verification_key",
        f.p("a.example").addr
    ));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").cloned();
    let body = response.bytes().await.unwrap();
    let answer = VerificationKeyResponse::decode_exact(&body, &Limits::default()).unwrap();
    let code = match answer.result {
        VerificationKeyResult::Ok(_) => None,
        VerificationKeyResult::Error(e) => Some(e.code),
    };
    (status, code, challenge)
}

/// b.example asks a.example for Alice's connection KeyPackages, signed with
/// `key` (b.example's own unless another is given), with `authorization`.
async fn key_packages(
    f: &Federation,
    authorization: Option<&HeaderValue>,
    key: Option<&ProviderKey>,
) -> Answer {
    let path = "/connection_key_packages";
    let body = ConnectionKeyPackageRequest {
        version: 1,
        requester: "mimi://b.example/u/bob".parse().unwrap(),
        target: ALICE.parse().unwrap(),
    }
    .to_bytes()
    .unwrap();
    let key = key.unwrap_or_else(|| f.p("b.example").keys.current());
    let signature = sign(key, "b.example", "a.example", "POST", path, &body, now());
    let mut request = f
        .raw_client(None)
        .post(format!("https://{}{path}", f.p("a.example").addr))
        .header("content-type", OCTET)
        .header(PROVIDER_SIGNATURE_HEADER, signature)
        .body(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").cloned();
    let body = response.bytes().await.unwrap();
    let answer = ConnectionKeyPackageResponse::decode_exact(&body, &Limits::default()).unwrap();
    let code = match answer.result {
        KeyPackagesResult::Ok(_) => None,
        KeyPackagesResult::Error(e) => Some(e.code),
    };
    (status, code, challenge)
}

/// The challenges of a refusal, by issuer name: (challenge, token-key).
fn challenges(value: &HeaderValue) -> Vec<(String, TokenChallenge, Vec<u8>)> {
    parse_www_authenticate_header(value)
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.token_challenge().issuer_name(),
                c.token_challenge().clone(),
                c.token_key().to_vec(),
            )
        })
        .collect()
}

fn challenge_of(value: &HeaderValue, issuer: &str) -> (TokenChallenge, Vec<u8>) {
    challenges(value)
        .into_iter()
        .find(|(name, _, _)| name == issuer)
        .map(|(_, c, k)| (c, k))
        .unwrap_or_else(|| panic!("no challenge of {issuer}"))
}

/// A token for `challenge`, blinded for the issuer's `token_key` and signed
/// by `issue` (the issuer's endpoint or a standalone issuer).
async fn token<F, Fut>(challenge: &TokenChallenge, token_key: &[u8], issue: F) -> PublicToken
where
    F: FnOnce(Vec<u8>) -> Fut,
    Fut: Future<Output = Vec<u8>>,
{
    let mut rng = blind_rsa_signatures::reexports::rand::rng();
    let public_key = PublicKey::from_spki(token_key).unwrap();
    let (request, state) = TokenRequest::new(&mut rng, public_key, challenge).unwrap();
    let response = issue(request.tls_serialize_detached().unwrap()).await;
    TokenResponse::tls_deserialize_exact(&response)
        .unwrap()
        .issue_token(&state)
        .unwrap()
}

fn header(token: &PublicToken) -> HeaderValue {
    build_authorization_header(token).unwrap().1
}

/// `token` with one byte of its encoding changed at `at`.
fn garbled(token: &PublicToken, at: usize) -> HeaderValue {
    let mut bytes = token.tls_serialize_detached().unwrap();
    bytes[at] ^= 0x01;
    HeaderValue::from_str(&format!("PrivateToken token={}", URL_SAFE.encode(bytes))).unwrap()
}

/// A client of a.example's user Alice, enrolled through the client API.
async fn alice_client(f: &Federation) -> ProviderApi {
    let a = f.p("a.example");
    let store = a.service.store();
    store.add_user(ALICE.into(), now()).await.unwrap();
    let secret = "alice's secret";
    store
        .add_enrolment(
            Sha256::digest(secret.as_bytes()).into(),
            ALICE.into(),
            now() + 3600,
            now(),
        )
        .await
        .unwrap();
    let alice: UserId = ALICE.parse().unwrap();
    ProviderApi::enrol(
        f.raw_client(None),
        &format!("https://{}", a.addr),
        "a.example",
        secret,
        &alice,
        "phone",
        SigningKey::generate().unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_token_is_challenged_and_a_token_is_accepted_once() {
    let keys = keys();
    let f = federation(&keys).await;
    let api = alice_client(&f).await;

    // Without a token: 401 and a challenge per accepted issuer, for this
    // origin, with each issuer's key.
    let (status, code, challenge) = verification_key(&f, None).await;
    assert_eq!((status, code), (401, Some(ErrorCode::PrivacyPassRequired)));
    let challenge = challenge.expect("WWW-Authenticate");
    assert!(challenge.to_str().unwrap().starts_with("PrivateToken "));
    let offered = challenges(&challenge);
    assert_eq!(
        offered
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["a.example", "issuer.example"]
    );
    for (name, c, key) in &offered {
        assert_eq!(c.token_type(), TokenType::Public, "{name}");
        assert_eq!(c.origin_info(), ["a.example"], "{name}");
        assert_eq!(c.redemption_context(), None, "{name}");
        let expected = if name == "a.example" {
            &keys.own
        } else {
            &keys.other
        };
        assert_eq!(key.as_slice(), expected.token_key(), "{name}");
    }
    // The same on the signed endpoint, before the signature is looked at.
    let (status, code, again) = key_packages(&f, None, None).await;
    assert_eq!((status, code), (401, Some(ErrorCode::PrivacyPassRequired)));
    assert_eq!(again.as_ref(), Some(&challenge));

    // Alice's client gets a token from its provider's issuer...
    let (own_challenge, own_key) = challenge_of(&challenge, "a.example");
    let first = token(&own_challenge, &own_key, |request| {
        let api = &api;
        async move { api.privacy_pass_token(&request).await.unwrap() }
    })
    .await;
    // ...which is accepted once.
    let (status, code, challenge_header) = verification_key(&f, Some(&header(&first))).await;
    assert_eq!((status, code, challenge_header), (200, None, None));
    let (status, code, challenge_header) = verification_key(&f, Some(&header(&first))).await;
    assert_eq!((status, code), (401, Some(ErrorCode::PrivacyPassRequired)));
    assert_eq!(challenge_header.as_ref(), Some(&challenge));
    // Spent is spent on every guarded endpoint.
    let (status, code, _) = key_packages(&f, Some(&header(&first)), None).await;
    assert_eq!((status, code), (401, Some(ErrorCode::PrivacyPassRequired)));

    // A token of issuer.example, accepted by a.example, on the signed
    // endpoint: once (Alice has no KeyPackages: the endpoint's own answer).
    let (other_challenge, other_key) = challenge_of(&challenge, "issuer.example");
    let other = issuer("issuer.example", &keys.other);
    let second = token(&other_challenge, &other_key, |request| async move {
        other.issue("someone", &request).await.unwrap()
    })
    .await;
    let (status, code, _) = key_packages(&f, Some(&header(&second)), None).await;
    assert_eq!((status, code), (404, Some(ErrorCode::NoKeyPackages)));
    let (status, code, _) = key_packages(&f, Some(&header(&second)), None).await;
    assert_eq!((status, code), (401, Some(ErrorCode::PrivacyPassRequired)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_garbled_foreign_and_misdirected_tokens_are_refused_and_spend_nothing() {
    let keys = keys();
    let f = federation(&keys).await;
    let api = alice_client(&f).await;
    let (_, _, challenge) = verification_key(&f, None).await;
    let challenge = challenge.expect("WWW-Authenticate");
    let (own_challenge, own_key) = challenge_of(&challenge, "a.example");
    let genuine = token(&own_challenge, &own_key, |request| {
        let api = &api;
        async move { api.privacy_pass_token(&request).await.unwrap() }
    })
    .await;

    let refused = |answer: Answer, what: &str| {
        assert_eq!(
            (answer.0, answer.1),
            (401, Some(ErrorCode::PrivacyPassRequired)),
            "{what}"
        );
        assert_eq!(answer.2.as_ref(), Some(&challenge), "{what}");
    };
    // Forged: one bit of the authenticator, of the nonce, of the challenge
    // digest or of the key id changed (type 2 bytes, nonce 32, digest 32,
    // key id 32, authenticator 256).
    for (at, what) in [
        (2 + 32 + 32 + 32 + 100, "authenticator"),
        (2 + 5, "nonce"),
        (2 + 32 + 5, "challenge digest"),
        (2 + 32 + 32 + 31, "key id"),
    ] {
        refused(
            verification_key(&f, Some(&garbled(&genuine, at))).await,
            what,
        );
    }
    // Garbled headers.
    for value in [
        "PrivateToken token=not-a-token",
        "PrivateToken token=",
        "PrivateToken",
        "PrivateToken token=AAAA, token=AAAA",
    ] {
        refused(
            verification_key(&f, Some(&HeaderValue::from_static(value))).await,
            value,
        );
    }
    let bytes = genuine.tls_serialize_detached().unwrap();
    let truncated = HeaderValue::from_str(&format!(
        "PrivateToken token={}",
        URL_SAFE.encode(&bytes[..bytes.len() - 1])
    ))
    .unwrap();
    refused(verification_key(&f, Some(&truncated)).await, "truncated");
    // Another scheme is no token.
    refused(
        verification_key(&f, Some(&HeaderValue::from_static("Bearer abc"))).await,
        "Bearer",
    );

    // A token of an issuer a.example does not accept, made for a.example's
    // challenge shape under its own name and under a.example's name.
    let rogue = issuer("rogue.example", &keys.rogue);
    for name in ["rogue.example", "a.example"] {
        let c = TokenChallenge::new(TokenType::Public, name, None, &["a.example".to_owned()]);
        let rogue = rogue.clone();
        let foreign = token(&c, keys.rogue.token_key(), |request| async move {
            rogue.issue("someone", &request).await.unwrap()
        })
        .await;
        refused(
            verification_key(&f, Some(&header(&foreign))).await,
            &format!("rogue issuer as {name}"),
        );
    }
    // A token of a.example's issuer for another origin (b.example's
    // challenge) is no token for a.example.
    let elsewhere = TokenChallenge::new(
        TokenType::Public,
        "a.example",
        None,
        &["b.example".to_owned()],
    );
    let misdirected = token(&elsewhere, &own_key, |request| {
        let api = &api;
        async move { api.privacy_pass_token(&request).await.unwrap() }
    })
    .await;
    refused(
        verification_key(&f, Some(&header(&misdirected))).await,
        "another origin",
    );

    // A token on a request whose provider authentication fails is not
    // spent: the token is checked before the signature, spent after it.
    let stranger = ProviderKey::generate(now() - 60, now() + 86_400).unwrap();
    let (status, code, _) = key_packages(&f, Some(&header(&genuine)), Some(&stranger)).await;
    assert_eq!(
        (status, code),
        (401, Some(ErrorCode::ProviderAuthenticationFailed))
    );

    // None of that spent the genuine token: it is accepted, once.
    let (status, code, _) = key_packages(&f, Some(&header(&genuine)), None).await;
    assert_eq!((status, code), (404, Some(ErrorCode::NoKeyPackages)));
    refused(
        key_packages(&f, Some(&header(&genuine)), None).await,
        "spent",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_is_for_enrolled_clients_within_their_limit() {
    let keys = keys();
    let mut settings = settings(&keys);
    settings.issuance = Some(Rate {
        per_second: 1,
        burst: 3,
    });
    let mut a = Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature);
    a.privacy_pass = Some(settings);
    let f = Federation::new(&[a]).await;
    let api = alice_client(&f).await;
    let (_, _, challenge) = verification_key(&f, None).await;
    let (own_challenge, own_key) = challenge_of(&challenge.unwrap(), "a.example");
    let mut rng = blind_rsa_signatures::reexports::rand::rng();
    let public_key = PublicKey::from_spki(&own_key).unwrap();
    let (request, _) = TokenRequest::new(&mut rng, public_key, &own_challenge).unwrap();
    let request = request.tls_serialize_detached().unwrap();
    for _ in 0..3 {
        api.privacy_pass_token(&request).await.unwrap();
    }
    match api.privacy_pass_token(&request).await {
        Err(ApiError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (429, "rate_limited"))
        }
        other => panic!("not limited: {other:?}"),
    }
    // A request that is no TokenRequest is refused.
    let other = alice_other_device(&f).await;
    match other.privacy_pass_token(b"garbage").await {
        Err(ApiError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (400, "malformed_message"))
        }
        other => panic!("not refused: {other:?}"),
    }
    // Without a client signature, nothing is issued.
    let response = f
        .raw_client(None)
        .post(format!(
            "https://{}/client/v1/privacy_pass/token-request",
            f.p("a.example").addr
        ))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"token_request\":\"{}\"}}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&request)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

/// Another enrolled client of Alice (its own issuance allowance).
async fn alice_other_device(f: &Federation) -> ProviderApi {
    let a = f.p("a.example");
    let secret = "alice's second secret";
    a.service
        .store()
        .add_enrolment(
            Sha256::digest(secret.as_bytes()).into(),
            ALICE.into(),
            now() + 3600,
            now(),
        )
        .await
        .unwrap();
    ProviderApi::enrol(
        f.raw_client(None),
        &format!("https://{}", a.addr),
        "a.example",
        secret,
        &ALICE.parse().unwrap(),
        "laptop",
        SigningKey::generate().unwrap(),
    )
    .await
    .unwrap()
}
