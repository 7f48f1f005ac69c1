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
    ask_key_packages(f, ("b.example", "a.example"), ALICE, authorization, key).await
}

/// `from` asks `to` for `target`'s connection KeyPackages for a user of
/// its own, signed with `key` (`from`'s own unless another is given), with
/// `authorization`.
async fn ask_key_packages(
    f: &Federation,
    (from, to): (&str, &str),
    target: &str,
    authorization: Option<&HeaderValue>,
    key: Option<&ProviderKey>,
) -> Answer {
    let path = "/connection_key_packages";
    let body = ConnectionKeyPackageRequest {
        version: 1,
        requester: format!("mimi://{from}/u/someone").parse().unwrap(),
        target: target.parse().unwrap(),
    }
    .to_bytes()
    .unwrap();
    let key = key.unwrap_or_else(|| f.p(from).keys.current());
    let signature = sign(key, from, to, "POST", path, &body, now());
    let mut request = f
        .raw_client(None)
        .post(format!("https://{}{path}", f.p(to).addr))
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
    enrolled(f, ALICE, "phone").await
}

/// A client `device` of `user` (made if new), enrolled through its
/// provider's client API.
async fn enrolled(f: &Federation, user: &str, device: &str) -> ProviderApi {
    let user: UserId = user.parse().unwrap();
    let provider = f.p(user.domain().as_str());
    let store = provider.service.store();
    // The user may exist already (another device).
    let _ = store.add_user(user.to_string(), now()).await;
    let secret = format!("secret of {user} {device}");
    store
        .add_enrolment(
            Sha256::digest(secret.as_bytes()).into(),
            user.to_string(),
            now() + 3600,
            now(),
        )
        .await
        .unwrap();
    ProviderApi::enrol(
        f.raw_client(None),
        &format!("https://{}", provider.addr),
        user.domain().as_str(),
        &secret,
        &user,
        device,
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
    enrolled(f, ALICE, "laptop").await
}

/// b.example guards `/connection_key_packages` and `/connection_request`
/// and accepts a.example's issuer; a.example and c.example are issuers for
/// their own clients. Alice (a.example) fetches Bob's KeyPackages and asks
/// him to connect through her provider: her SDK is challenged with
/// b.example's challenge, passed on by a.example's client API, gets a token
/// from a.example and asks again with it, which a.example carries to
/// b.example. Carol (c.example, an issuer b.example does not accept) gets
/// the challenge and nothing else. A token the SDK made is good at
/// b.example once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_carries_its_clients_tokens_to_a_peer_that_asks_for_them() {
    let keys = keys();
    let issuance = Some(Rate {
        per_second: 1,
        burst: 20,
    });
    let mut a = Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature);
    a.privacy_pass = Some(PrivacyPassSettings {
        issuer: Some(("a.example".into(), keys.own.clone())),
        issuance,
        ..PrivacyPassSettings::default()
    });
    let mut b = Setup::new("b.example", [127, 0, 0, 3], AuthMode::Signature);
    b.privacy_pass = Some(PrivacyPassSettings {
        endpoints: vec![Endpoint::ConnectionKeyPackages, Endpoint::ConnectionRequest],
        issuers: vec![Issuer::new("a.example", keys.own.token_key()).unwrap()],
        ..PrivacyPassSettings::default()
    });
    let mut c = Setup::new("c.example", [127, 0, 0, 4], AuthMode::Signature);
    c.privacy_pass = Some(PrivacyPassSettings {
        issuer: Some(("c.example".into(), keys.rogue.clone())),
        issuance,
        ..PrivacyPassSettings::default()
    });
    let f = Federation::new(&[a, b, c]).await;
    const BOB: &str = "mimi://b.example/u/bob";
    let bob_api = enrolled(&f, BOB, "phone").await;
    let bob_mls = mimid_client::MimiClient::new(bob_api.client_id().clone()).unwrap();
    bob_api
        .publish_key_packages(&[
            bob_mls.key_package(true, false).unwrap(),
            bob_mls.key_package(true, true).unwrap(),
        ])
        .await
        .unwrap();
    let bob: UserId = BOB.parse().unwrap();
    let alice_api = alice_client(&f).await;
    let mut alice = mimid_client::MimiClient::new(alice_api.client_id().clone()).unwrap();
    let carol_api = enrolled(&f, "mimi://c.example/u/carol", "phone").await;

    // Carol's provider is no issuer b.example accepts: she gets b.example's
    // challenge (through c.example's client API), naming a.example only.
    let challenge = match carol_api.fetch_key_packages(&bob, true, &[]).await {
        Err(ApiError::Refused {
            status,
            code,
            challenge: Some(challenge),
            ..
        }) => {
            assert_eq!((status, code.as_str()), (401, "privacy_pass_required"));
            challenge
        }
        other => panic!("not challenged: {other:?}"),
    };
    let offered = challenges(&HeaderValue::from_str(&challenge).unwrap());
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].0, "a.example");
    assert_eq!(offered[0].2, keys.own.token_key());
    assert_eq!(offered[0].1.origin_info(), vec!["b.example".to_owned()]);

    // Alice's SDK gets a token from a.example and fetches with it.
    let kps = alice_api.fetch_key_packages(&bob, true, &[]).await.unwrap();
    assert_eq!(kps.len(), 1);
    // She makes a connection group on a.example and asks Bob to connect:
    // another token.
    let (group, welcome) = connection_group(&alice_api, &mut alice, &kps).await;
    alice_api
        .connect(&bob, &group.to_mls_bytes(), 1, &welcome)
        .await
        .unwrap();
    let seen = bob_api.connection_requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sender_user, ALICE.parse::<UserId>().unwrap());
    // Carol cannot ask him.
    match carol_api
        .connect(&bob, &group.to_mls_bytes(), 1, &welcome)
        .await
    {
        Err(ApiError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (401, "privacy_pass_required"))
        }
        other => panic!("not challenged: {other:?}"),
    }
    assert_eq!(bob_api.connection_requests().await.unwrap().len(), 1);

    // A token the SDK makes for b.example's challenge is good there once.
    let token = alice_api.token_for(&challenge).await.unwrap().unwrap();
    let authorization =
        HeaderValue::from_str(&format!("PrivateToken token={}", URL_SAFE.encode(&token))).unwrap();
    let ask = || {
        ask_key_packages(
            &f,
            ("a.example", "b.example"),
            BOB,
            Some(&authorization),
            None,
        )
    };
    assert_eq!(ask().await, (200, None, None));
    let (status, code, again) = ask().await;
    assert_eq!((status, code), (401, Some(ErrorCode::PrivacyPassRequired)));
    assert_eq!(again.unwrap().to_str().unwrap(), challenge);
    // Carol's provider makes her no token for it.
    assert_eq!(carol_api.token_for(&challenge).await.unwrap(), None);
}

/// A connection group made through `api` with the clients of `kps` added:
/// its id and the Welcome.
async fn connection_group(
    api: &ProviderApi,
    mls: &mut mimid_client::MimiClient,
    kps: &[mimid_wire::KeyPackage],
) -> (mimid_wire::GroupId, Vec<u8>) {
    use mimid_wire::{DSAuthData, DSRequest, DSRequestBody, DSResponseBody, GroupIdField};
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(group)) = api.submit(&ask).await.unwrap() else {
        panic!("no group id")
    };
    let create = mls
        .create_group(&group, mimid_wire::GroupKind::Connection)
        .unwrap();
    api.submit(&create).await.unwrap();
    let add = mls.add(&group, kps, false).unwrap();
    api.submit(&add).await.unwrap();
    mls.merge_pending_commit(&group).unwrap();
    let DSRequestBody::AddUsers(users) = &add.request_body else {
        panic!("not add_users")
    };
    let welcome = users.welcome_messages[0].as_bytes().to_vec();
    (group, welcome)
}
