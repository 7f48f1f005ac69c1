//! Rate limits over real HTTPS (`docs/protocol.md` 3.4): per remote IP
//! before anything else is checked, per sending provider once it is
//! authenticated; 429 `rate_limited` with `Retry-After`, and the other
//! addresses and providers served meanwhile. Each limiter's memory stays
//! bounded under a million distinct keys, and a hub limited by its peer
//! delivers everything, once, as fast as the limit lets it.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use mimid_transport::auth::AuthMode;
use mimid_transport::ratelimit::{Limiter, Rate, RateLimits};
use mimid_transport::signature::PROVIDER_SIGNATURE_HEADER;
use mimid_transport::{Clock as _, tls};
use mimid_wire::ErrorCode;

const OCTET: &str = "application/octet-stream";

fn limits(per_ip: Option<Rate>, per_provider: Option<Rate>) -> RateLimits {
    RateLimits {
        per_ip,
        per_provider,
        per_group: None,
        per_member: None,
        per_target_user: None,
        max_keys: 1_000,
    }
}

/// An HTTPS client whose connections come from `ip`.
fn client_from(f: &Federation, ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls::client_config(f.roots.clone(), None).unwrap())
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .build()
        .unwrap()
}

/// `POST path` to a.example: status, error code, `Retry-After`.
async fn post(
    http: &reqwest::Client,
    f: &Federation,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Option<ErrorCode>, Option<String>) {
    let mut request = http
        .post(format!("https://{}{path}", f.p("a.example").addr))
        .header("content-type", OCTET)
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.bytes().await.unwrap();
    let code = (status != 200 && !path.starts_with("/client/")).then(|| ds_error(&body).code);
    (status, code, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_limit_gets_429_before_anything_else_and_others_are_served() {
    let mut setups = [
        Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature),
        Setup::new("b.example", [127, 0, 0, 3], AuthMode::Signature),
    ];
    setups[0].rate_limits = Some(limits(
        Some(Rate {
            per_second: 1,
            burst: 5,
        }),
        None,
    ));
    let f = Federation::new(&setups).await;
    let flood = client_from(&f, [127, 0, 0, 20]);
    let calm = client_from(&f, [127, 0, 0, 21]);
    // Unsigned: refused by provider authentication while under the limit,
    // by the limit (before authentication is looked at) once over it.
    let mut codes = Vec::new();
    for _ in 0..12 {
        let (status, code, retry) = post(&flood, &f, "/welcome_information", &[], vec![]).await;
        if code == Some(ErrorCode::RateLimited) {
            assert_eq!(status, 429);
            let seconds: u32 = retry.expect("Retry-After").parse().unwrap();
            assert!((1..=2).contains(&seconds), "Retry-After {seconds}");
        }
        codes.push(code);
    }
    let authenticated = codes
        .iter()
        .filter(|c| **c == Some(ErrorCode::ProviderAuthenticationFailed))
        .count();
    let limited = codes
        .iter()
        .filter(|c| **c == Some(ErrorCode::RateLimited))
        .count();
    assert_eq!(authenticated + limited, 12, "{codes:?}");
    assert!((5..=6).contains(&authenticated), "{codes:?}");
    assert_eq!(codes[11], Some(ErrorCode::RateLimited));
    // Another address is served meanwhile; the client API is not limited
    // per address.
    let (_, code, _) = post(&calm, &f, "/welcome_information", &[], vec![]).await;
    assert_eq!(code, Some(ErrorCode::ProviderAuthenticationFailed));
    let (status, _, _) = post(&flood, &f, "/client/v1/ack", &[], b"{}".to_vec()).await;
    assert_eq!(status, 401, "the client API answers for itself");
    // A token comes back after a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (_, code, _) = post(&flood, &f, "/welcome_information", &[], vec![]).await;
    assert_eq!(code, Some(ErrorCode::ProviderAuthenticationFailed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_over_its_limit_gets_429_and_others_are_served() {
    let mut setups = [
        Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature),
        Setup::new("b.example", [127, 0, 0, 3], AuthMode::Signature),
        Setup::new("c.example", [127, 0, 0, 4], AuthMode::Signature),
    ];
    setups[0].rate_limits = Some(limits(
        None,
        Some(Rate {
            per_second: 1,
            burst: 3,
        }),
    ));
    let f = Federation::new(&setups).await;
    let http = f.raw_client(None);
    // A signed body that does not decode: refused by the decoder once the
    // sender is authenticated and under its limit.
    let body = b"not even a request".to_vec();
    let signed = |from: &str| {
        let key = f.p(from).keys.current().clone();
        let header = sign(
            &key,
            from,
            "a.example",
            "POST",
            "/group_operation",
            &body,
            f.clock.now(),
        );
        [(PROVIDER_SIGNATURE_HEADER, header)]
    };
    let mut codes = Vec::new();
    for _ in 0..6 {
        let (_, code, retry) = post(
            &http,
            &f,
            "/group_operation",
            &signed("b.example"),
            body.clone(),
        )
        .await;
        if code == Some(ErrorCode::RateLimited) {
            assert!(retry.is_some(), "429 without Retry-After");
        }
        codes.push(code);
    }
    assert_eq!(
        codes[..3],
        [Some(ErrorCode::UnsupportedVersion); 3],
        "{codes:?}"
    );
    assert_eq!(codes[5], Some(ErrorCode::RateLimited), "{codes:?}");
    // c.example is served meanwhile; an unauthenticated request is not
    // charged to b.example's bucket (it is refused by authentication).
    let (_, code, _) = post(
        &http,
        &f,
        "/group_operation",
        &signed("c.example"),
        body.clone(),
    )
    .await;
    assert_eq!(code, Some(ErrorCode::UnsupportedVersion));
    let (_, code, _) = post(&http, &f, "/group_operation", &[], body.clone()).await;
    assert_eq!(code, Some(ErrorCode::ProviderAuthenticationFailed));
}

/// A provider its limit refused is turned away before its signature is
/// checked until its bucket has a token again (so a flood over the limit
/// costs no signature checks): a request claiming it is answered 429 even
/// with a bad signature, and takes nothing from its bucket; once the
/// bucket has a token, a bad signature is 401 again and the provider is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_provider_is_turned_away_before_its_signature_is_checked() {
    let mut setups = [
        Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature),
        Setup::new("b.example", [127, 0, 0, 3], AuthMode::Signature),
        Setup::new("c.example", [127, 0, 0, 4], AuthMode::Signature),
    ];
    setups[0].rate_limits = Some(limits(
        None,
        Some(Rate {
            per_second: 1,
            burst: 1,
        }),
    ));
    let f = Federation::new(&setups).await;
    let http = f.raw_client(None);
    let body = b"not even a request".to_vec();
    // Signed as `sender` with `signer`'s key.
    let signed = |sender: &str, signer: &str| {
        let key = f.p(signer).keys.current().clone();
        let header = sign(
            &key,
            sender,
            "a.example",
            "POST",
            "/group_operation",
            &body,
            f.clock.now(),
        );
        [(PROVIDER_SIGNATURE_HEADER, header)]
    };
    let code = async |headers: &[(&'static str, String)]| {
        post(&http, &f, "/group_operation", headers, body.clone())
            .await
            .1
    };
    // b.example takes its one token, then is refused.
    assert_eq!(
        code(&signed("b.example", "b.example")).await,
        Some(ErrorCode::UnsupportedVersion)
    );
    assert_eq!(
        code(&signed("b.example", "b.example")).await,
        Some(ErrorCode::RateLimited)
    );
    // Meanwhile a bad signature claiming b.example is turned away as b.example
    // is; claiming c.example (not refused) it fails authentication.
    assert_eq!(
        code(&signed("b.example", "c.example")).await,
        Some(ErrorCode::RateLimited)
    );
    assert_eq!(
        code(&signed("c.example", "b.example")).await,
        Some(ErrorCode::ProviderAuthenticationFailed)
    );
    // Once b.example's bucket has a token again, a bad signature claiming it
    // is checked (401, taking nothing), and b.example is served.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        code(&signed("b.example", "c.example")).await,
        Some(ErrorCode::ProviderAuthenticationFailed)
    );
    assert_eq!(
        code(&signed("b.example", "b.example")).await,
        Some(ErrorCode::UnsupportedVersion)
    );
}

#[test]
fn a_limiter_says_whom_it_refuses_without_taking_anything() {
    let limiter: Limiter<&str> = Limiter::new(
        Rate {
            per_second: 2,
            burst: 1,
        },
        10,
    )
    .unwrap();
    assert_eq!(limiter.refusing(&"b"), None);
    assert!(limiter.check(&"b").is_ok());
    // A token taken is no refusal.
    assert_eq!(limiter.refusing(&"b"), None);
    let wait = limiter.check(&"b").unwrap_err();
    let refusing = limiter.refusing(&"b").expect("refused lately");
    assert!(
        refusing <= wait && refusing > Duration::ZERO,
        "{refusing:?}"
    );
    assert_eq!(limiter.refusing(&"c"), None);
    std::thread::sleep(wait);
    assert_eq!(limiter.refusing(&"b"), None);
    // Asking took nothing: the refill is there.
    assert!(limiter.check(&"b").is_ok());
}

#[test]
fn a_limiter_stays_bounded_under_a_million_keys() {
    let limiter: Limiter<u64> = Limiter::new(
        Rate {
            per_second: 1,
            burst: 1,
        },
        10_000,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut passed = 0u64;
    for key in 0..1_000_000u64 {
        if limiter.check(&key).is_ok() {
            passed += 1;
        }
        if key % 1_000 == 0 {
            assert!(limiter.len() <= 10_000, "{} keys at {key}", limiter.len());
        }
    }
    assert!(limiter.len() <= 10_000);
    // A fresh key passes only with a tracked bucket of its own (a slot frees
    // when its key's bucket is full again, after a second) or through the
    // shared overflow bucket (one a second): not a million.
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        passed <= 10_000 * (seconds + 1) + seconds,
        "{passed} fresh keys passed in {seconds} s"
    );
    // A tracked key keeps its own bucket: its second request is refused.
    let fresh: Limiter<u64> = Limiter::new(
        Rate {
            per_second: 1,
            burst: 1,
        },
        10,
    )
    .unwrap();
    assert!(fresh.check(&1).is_ok());
    assert!(fresh.check(&1).is_err());
    assert!(fresh.check(&2).is_ok());
}

/// A hub's outbox against a provider that limits it (three providers on
/// loopback): b.example takes one request a second from a.example, which
/// has ten groups' Welcomes and messages for Bob. The outbox waits as
/// `Retry-After` says and retries; every message reaches Bob once, in hub
/// order per group, nothing goes to the dead letters, and the deliveries
/// took as long as the limit makes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_hub_waits_and_delivers_everything_once() {
    use std::collections::HashMap;

    use mimid_client::MimiClient;
    use mimid_core::DsEndpoint;
    use mimid_store::Store;
    use mimid_transport::SystemClock;
    use mimid_transport::loopback::Loopback;
    use mimid_wire::{
        DSAuthData, DSRequest, DSRequestBody, DSResponseBody, GroupIdField, GroupKind,
        WelcomeMessage,
    };

    const GROUPS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let limited = limits(
        None,
        Some(Rate {
            per_second: 1,
            burst: 1,
        }),
    );
    let f = Loopback::start_limited(
        dir.path(),
        &["a.example", "b.example"],
        AuthMode::Signature,
        HashMap::from([("b.example".to_string(), limited)]),
    )
    .await
    .unwrap();
    let mut alice = MimiClient::new("mimi://a.example/d/alice/laptop".parse().unwrap()).unwrap();
    let bob = MimiClient::new("mimi://b.example/d/bob/phone".parse().unwrap()).unwrap();
    let b = f.node("b.example").unwrap();
    b.service
        .store()
        .add_client(
            bob.id().to_string(),
            bob.id().user().to_string(),
            SystemClock.now(),
        )
        .await
        .unwrap();
    let hub = f.node("a.example").unwrap();
    let started = std::time::Instant::now();
    let mut expected = Vec::new();
    for i in 0..GROUPS {
        let ask = DSRequest {
            version: 1,
            request_body: DSRequestBody::RequestGroupId,
            authentication_data: DSAuthData::Anonymous,
        };
        let DSResponseBody::GroupId(GroupIdField(group)) =
            hub.submit(DsEndpoint::GroupOperation, &ask).await.unwrap()
        else {
            panic!("no group id")
        };
        let create = alice.create_group(&group, GroupKind::Regular).unwrap();
        hub.submit(DsEndpoint::GroupOperation, &create)
            .await
            .unwrap();
        let add = alice
            .add(&group, &[bob.key_package(false, false).unwrap()], false)
            .unwrap();
        hub.submit(DsEndpoint::GroupOperation, &add).await.unwrap();
        alice.merge_pending_commit(&group).unwrap();
        let message = alice
            .send_message(&group, format!("to group {i}").as_bytes())
            .unwrap();
        let DSRequestBody::SendMessage(m) = &message.request_body else {
            unreachable!()
        };
        hub.submit(DsEndpoint::GroupOperation, &message)
            .await
            .unwrap();
        expected.push((
            group.to_mls_bytes(),
            m.application_message.as_bytes().to_vec(),
        ));
    }
    // Everything arrives (the limit allows ~1 request a second; at least
    // one per group).
    let deadline = started + Duration::from_secs(120);
    let queued = loop {
        let queued = b
            .service
            .store()
            .client_queue(bob.id().as_str(), 0, 1_000)
            .await
            .unwrap();
        if queued.len() >= 2 * GROUPS || std::time::Instant::now() > deadline {
            break queued;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    assert_eq!(queued.len(), 2 * GROUPS, "not everything arrived once");
    for (group, message) in &expected {
        let of_group: Vec<&Vec<u8>> = queued
            .iter()
            .filter(|q| &q.group_id == group)
            .map(|q| &q.message)
            .collect();
        assert_eq!(of_group.len(), 2);
        assert!(
            WelcomeMessage::from_bytes(of_group[0]).is_ok(),
            "Welcome first"
        );
        assert_eq!(of_group[1], message);
    }
    // At least one request per group, one a second after the first.
    assert!(
        took >= Duration::from_secs(GROUPS as u64 - 2),
        "{GROUPS} groups delivered in {took:?}: the limit was not applied"
    );
    let store = hub.service.store();
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    // The receiver queues a message before its 200 reaches the hub's
    // dispatcher, which then records the job done: give that a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut pending = store.pending_jobs("b.example", 10).await.unwrap();
    while !pending.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pending = store.pending_jobs("b.example", 10).await.unwrap();
    }
    assert!(pending.is_empty(), "{} jobs never completed", pending.len());
}

/// The limits that come after decoding, each keyed under the sending
/// provider where a provider names the key: a member's `/group_operation`
/// requests, a group's `/external_commit_information` requests, and the
/// `/connection_key_packages` requests for one target user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_groups_and_target_users_have_their_own_limits() {
    use mimid_core::DsEndpoint;
    use mimid_wire::{
        ConnectionKeyPackageRequest, ConnectionKeyPackageResponse, DSAuthData, DSRequest,
        DSRequestBody, DSResponseBody, ExternalCommitInformationRequest, GroupId, GroupIdField,
        KeyPackagesResult, Limits, Wire,
    };

    let two = Rate {
        per_second: 1,
        burst: 2,
    };
    let mut setups = [
        Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature),
        Setup::new("b.example", [127, 0, 0, 3], AuthMode::Signature),
    ];
    setups[0].rate_limits = Some(RateLimits {
        per_ip: None,
        per_provider: None,
        per_group: Some(two),
        per_member: Some(two),
        per_target_user: Some(two),
        max_keys: 1_000,
    });
    let f = Federation::new(&setups).await;
    let mut g = group(&f).await;
    let a = domain("a.example");
    let b = f.p("b.example");
    let code = |body: &DSResponseBody| match body {
        DSResponseBody::Error(e) => Some(e.code),
        _ => None,
    };

    // Bob's messages: two, then 429; the refused one stores nothing.
    let mut codes = Vec::new();
    let mut before = None;
    for i in 0..3 {
        let message = g
            .bob
            .send_message(&g.id, format!("{i}").as_bytes())
            .unwrap();
        if i == 2 {
            before = Some(trace(f.p("a.example"), &g.id).await);
        }
        let (status, response) = b
            .client
            .ds_request(&a, DsEndpoint::GroupOperation, &message)
            .await
            .unwrap();
        codes.push((status, code(&response.response_body)));
    }
    assert_eq!(
        codes,
        [
            (200, None),
            (200, None),
            (429, Some(ErrorCode::RateLimited))
        ]
    );
    assert_eq!(Some(trace(f.p("a.example"), &g.id).await), before);

    // External commit information for the group: one request left of the
    // burst (joining used one), then 429; another group is not affected.
    let eci = |group: &GroupId| DSRequest {
        version: 1,
        request_body: DSRequestBody::ExternalCommitInformation(ExternalCommitInformationRequest {
            group_id: GroupIdField(group.clone()),
            requester: "mimi://b.example/d/bob/laptop".parse().unwrap(),
        }),
        authentication_data: DSAuthData::Anonymous,
    };
    let mut codes = Vec::new();
    for _ in 0..2 {
        let (_, response) = b
            .client
            .ds_request(&a, DsEndpoint::ExternalCommitInformation, &eci(&g.id))
            .await
            .unwrap();
        codes.push(code(&response.response_body));
    }
    assert_eq!(codes, [None, Some(ErrorCode::RateLimited)]);
    let other = GroupId {
        hub_domain: a.clone(),
        local_id: [9; 16],
    };
    let (_, response) = b
        .client
        .ds_request(&a, DsEndpoint::ExternalCommitInformation, &eci(&other))
        .await
        .unwrap();
    assert_eq!(code(&response.response_body), Some(ErrorCode::UnknownGroup));

    // Connection KeyPackages of one user: two requests, then 429; another
    // user is not affected.
    async fn ask(
        client: &mimid_transport::TransportClient,
        a: &mimid_wire::ProviderDomain,
        target: &str,
    ) -> (u16, Option<ErrorCode>, Option<u64>) {
        let body = ConnectionKeyPackageRequest {
            version: 1,
            requester: "mimi://b.example/u/bob".parse().unwrap(),
            target: target.parse().unwrap(),
        }
        .to_bytes()
        .unwrap();
        let reply = client
            .post(a, "/connection_key_packages", body)
            .await
            .unwrap();
        let response =
            ConnectionKeyPackageResponse::decode_exact(&reply.body, &Limits::default()).unwrap();
        match response.result {
            KeyPackagesResult::Error(e) => (reply.status, Some(e.code), reply.retry_after),
            KeyPackagesResult::Ok(_) => (reply.status, None, reply.retry_after),
        }
    }
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(ask(&b.client, &a, "mimi://a.example/u/alice").await);
    }
    assert_eq!(codes[0].1, Some(ErrorCode::NoKeyPackages), "{codes:?}");
    assert_eq!(codes[1].1, Some(ErrorCode::NoKeyPackages), "{codes:?}");
    assert_eq!(codes[2].0, 429, "{codes:?}");
    assert!(codes[2].2.is_some(), "429 without Retry-After");
    let (_, other, _) = ask(&b.client, &a, "mimi://a.example/u/dan").await;
    assert_eq!(other, Some(ErrorCode::UnknownUser));
}

/// `/connection_request` shares the per-target-user layer: the third
/// request for one user within the burst is 429 and echoes its
/// `message_id`; a request for another user is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_requests_for_one_user_are_limited() {
    use mimid_wire::{
        ConnectionRequest, GroupId, GroupIdField, GroupKind, Limits, MessageId,
        QueueingServicePayload, QueueingServiceRequest, QueueingServiceResponse,
        QueueingServiceResult, Wire,
    };

    let mut setups = [
        Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature),
        Setup::new("b.example", [127, 0, 0, 3], AuthMode::Signature),
    ];
    setups[0].rate_limits = Some(RateLimits {
        per_target_user: Some(Rate {
            per_second: 1,
            burst: 2,
        }),
        ..limits(None, None)
    });
    let f = Federation::new(&setups).await;
    let a = domain("a.example");
    let b = f.p("b.example");
    // A real Welcome into a connection group of Bob's.
    let group = GroupId {
        hub_domain: domain("b.example"),
        local_id: [3; 16],
    };
    let mut bob = client("mimi://b.example/d/bob/phone");
    bob.create_group(&group, GroupKind::Connection).unwrap();
    let alice = client("mimi://a.example/d/alice/phone");
    let add = bob
        .add(&group, &[alice.key_package(true, false).unwrap()], false)
        .unwrap();
    let mimid_wire::DSRequestBody::AddUsers(users) = &add.request_body else {
        panic!("not add_users")
    };
    let welcome = users.welcome_messages[0].clone();
    let send = async |n: u8, target: &str| {
        let body = QueueingServiceRequest {
            version: 1,
            sender: domain("b.example"),
            recipient: a.clone(),
            message_id: MessageId([n; 16]),
            payload: QueueingServicePayload::ConnectionRequest(ConnectionRequest {
                sender_user: "mimi://b.example/u/bob".parse().unwrap(),
                recipient_user: target.parse().unwrap(),
                group_id: GroupIdField(group.clone()),
                epoch: 1,
                welcome: welcome.clone(),
            }),
        }
        .to_bytes()
        .unwrap();
        let reply = b
            .client
            .post(&a, "/connection_request", body)
            .await
            .unwrap();
        let response =
            QueueingServiceResponse::decode_exact(&reply.body, &Limits::default()).unwrap();
        let code = match response.result {
            QueueingServiceResult::Error(e) => Some(e.code),
            QueueingServiceResult::Ok(_) => None,
        };
        (reply.status, code, response.message_id)
    };
    let alice_user = "mimi://a.example/u/alice";
    let first = send(1, alice_user).await;
    let second = send(2, alice_user).await;
    assert_ne!(first.1, Some(ErrorCode::RateLimited), "{first:?}");
    assert_ne!(second.1, Some(ErrorCode::RateLimited), "{second:?}");
    let third = send(3, alice_user).await;
    assert_eq!(
        third,
        (429, Some(ErrorCode::RateLimited), MessageId([3; 16]))
    );
    let other = send(4, "mimi://a.example/u/dan").await;
    assert_ne!(other.1, Some(ErrorCode::RateLimited), "{other:?}");
}
