//! The transport over real TLS on loopback: real hubs on SQLite files,
//! real OpenMLS clients, certificates from a throwaway CA.

mod common;

use common::*;
use mimid_core::DsEndpoint;
use mimid_store::Store as _;
use mimid_transport::auth::AuthMode;
use mimid_transport::signature::{PROVIDER_SIGNATURE_HEADER, SENDER_HEADER};
use mimid_transport::*;
use mimid_wire::*;

const OCTET: &str = "application/octet-stream";

fn two(mode: AuthMode) -> [Setup; 2] {
    [
        Setup::new("a.example", [127, 0, 0, 2], mode),
        Setup::new("b.example", [127, 0, 0, 3], mode),
    ]
}

/// Bob (b.example) sends an application message and a commit to the hub
/// a.example through b.example's transport client.
async fn end_to_end(mode: AuthMode) {
    let f = Federation::new(&two(mode)).await;
    let mut g = group(&f).await;
    let a = domain("a.example");
    let before = trace(f.p("a.example"), &g.id).await;
    let message = g.bob.send_message(&g.id, b"hello over TLS").unwrap();
    let (status, response) = f
        .p("b.example")
        .client
        .ds_request(&a, DsEndpoint::GroupOperation, &message)
        .await
        .unwrap();
    assert_eq!(status, 200, "{response:?}");
    assert_eq!(response.response_body, DSResponseBody::Ok);
    let after = trace(f.p("a.example"), &g.id).await;
    assert_eq!(after.1, before.1 + 1, "the message was stored");
    let update = g.bob.update(&g.id).unwrap();
    let (status, response) = f
        .p("b.example")
        .client
        .ds_request(&a, DsEndpoint::GroupOperation, &update)
        .await
        .unwrap();
    assert_eq!(status, 200, "{response:?}");
    g.bob.merge_pending_commit(&g.id).unwrap();
    let (epoch, _) = f
        .p("a.example")
        .service
        .group_epoch(&g.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(epoch, 2);
    assert_eq!(g.bob.epoch_and_tree_hash(&g.id).unwrap().0, 2);
    let _ = &mut g.alice;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_request_end_to_end_in_signature_mode() {
    end_to_end(AuthMode::Signature).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_end_to_end_in_mtls_mode() {
    end_to_end(AuthMode::Mtls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_end_to_end_in_both_modes() {
    end_to_end(AuthMode::Both).await;
}

/// Sends a raw request to a.example and returns (status, body).
async fn raw(
    client: &reqwest::Client,
    f: &Federation,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let url = format!("https://{}{path}", f.p("a.example").addr);
    let mut req = client.request(method.parse().unwrap(), url).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.bytes().await.unwrap().to_vec(), headers)
}

fn assert_code(status: u16, body: &[u8], code: ErrorCode) {
    let e = ds_error(body);
    assert_eq!((status, e.code), (code.http_status(), code), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_in_signature_mode_leave_no_trace() {
    let f = Federation::new(&two(AuthMode::Signature)).await;
    let mut g = group(&f).await;
    let a = f.p("a.example");
    let b = f.p("b.example");
    let http = f.raw_client(None);
    let path = "/group_operation";
    let message = g
        .bob
        .send_message(&g.id, b"hi")
        .unwrap()
        .to_bytes()
        .unwrap();
    let key = b.keys.current().clone();
    let signed =
        |body: &[u8], ts: u64| sign(&key, "b.example", "a.example", "POST", path, body, ts);
    let ct = ("content-type", OCTET.to_string());
    let before = trace(a, &g.id).await;

    // Bad signature: a byte of the body changed after signing.
    let header = signed(&message, f.clock.now());
    let mut tampered = message.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        path,
        &[ct.clone(), (PROVIDER_SIGNATURE_HEADER, header)],
        tampered,
    )
    .await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);

    // Signed for another recipient.
    let other = sign(
        &key,
        "b.example",
        "c.example",
        "POST",
        path,
        &message,
        f.clock.now(),
    );
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        path,
        &[ct.clone(), (PROVIDER_SIGNATURE_HEADER, other)],
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);

    // Unknown key id: a key b.example does not publish.
    let stranger = ProviderKey::generate(f.clock.now() - 10, f.clock.now() + 1000).unwrap();
    let header = sign(
        &stranger,
        "b.example",
        "a.example",
        "POST",
        path,
        &message,
        f.clock.now(),
    );
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        path,
        &[ct.clone(), (PROVIDER_SIGNATURE_HEADER, header)],
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);

    // Timestamps outside the window, both ways.
    for ts in [f.clock.now() - 301, f.clock.now() + 301] {
        let header = signed(&message, ts);
        let (s, body, _) = raw(
            &http,
            &f,
            "POST",
            path,
            &[ct.clone(), (PROVIDER_SIGNATURE_HEADER, header)],
            message.clone(),
        )
        .await;
        assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);
    }

    // Missing header 401; two headers 400; a header that is not base64 400.
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        path,
        std::slice::from_ref(&ct),
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);
    let h1 = signed(&message, f.clock.now());
    let h2 = signed(&message, f.clock.now());
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        path,
        &[
            ct.clone(),
            (PROVIDER_SIGNATURE_HEADER, h1),
            (PROVIDER_SIGNATURE_HEADER, h2),
        ],
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::MalformedMessage);
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        path,
        &[ct.clone(), (PROVIDER_SIGNATURE_HEADER, "!!".into())],
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::MalformedMessage);

    // Wrong content type (415) comes before authentication.
    let header = signed(&message, f.clock.now());
    for t in ["text/plain", "application/json"] {
        let (s, body, _) = raw(
            &http,
            &f,
            "POST",
            path,
            &[
                ("content-type", t.into()),
                (PROVIDER_SIGNATURE_HEADER, header.clone()),
            ],
            message.clone(),
        )
        .await;
        assert_code(s, &body, ErrorCode::UnsupportedMediaType);
    }
    let (s, body, _) = raw(&http, &f, "POST", path, &[], message.clone()).await;
    assert_code(s, &body, ErrorCode::UnsupportedMediaType);

    // Oversized: declared (refused before reading) and streamed.
    let big = vec![0u8; DEFAULT_BODY_LIMIT + 1];
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        path,
        std::slice::from_ref(&ct),
        big.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::PayloadTooLarge);
    assert_eq!(
        ds_error(&body).detail,
        ErrorDetail::LimitBytes(DEFAULT_BODY_LIMIT as u32)
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..5).map(|_| Ok(vec![0u8; 1024 * 1024])).collect();
    let res = http
        .post(format!("https://{}{path}", a.addr))
        .header("content-type", OCTET)
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    let s = res.status().as_u16();
    assert_code(s, &res.bytes().await.unwrap(), ErrorCode::PayloadTooLarge);

    // Wrong method and unknown paths.
    let (s, body, _) = raw(
        &http,
        &f,
        "PUT",
        path,
        std::slice::from_ref(&ct),
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::MethodNotAllowed);
    let (s, body, _) = raw(
        &http,
        &f,
        "GET",
        path,
        std::slice::from_ref(&ct),
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::MethodNotAllowed);
    let (s, body, _) = raw(&http, &f, "HEAD", "/verification_key", &[], vec![]).await;
    assert_eq!(s, 405, "{body:?}");
    for unknown in ["/nope", "/client/v1/nope"] {
        let (s, body, _) = raw(
            &http,
            &f,
            "POST",
            unknown,
            std::slice::from_ref(&ct),
            message.clone(),
        )
        .await;
        assert_code(s, &body, ErrorCode::NotFound);
    }

    // A body that does not decode, correctly signed: 400 after authentication.
    let garbage = vec![0, 1, 0xff];
    let header = signed(&garbage, f.clock.now());
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        path,
        &[ct.clone(), (PROVIDER_SIGNATURE_HEADER, header)],
        garbage,
    )
    .await;
    assert_eq!(s, 400, "{}", ds_error(&body));

    // Unknown group (404) and a group of another hub (421).
    for (hub, code) in [
        ("a.example", ErrorCode::UnknownGroup),
        ("c.example", ErrorCode::WrongRecipient),
    ] {
        let ask = DSRequest {
            version: 1,
            request_body: DSRequestBody::ExternalCommitInformation(
                ExternalCommitInformationRequest {
                    group_id: GroupIdField(GroupId {
                        hub_domain: domain(hub),
                        local_id: [7; 16],
                    }),
                    requester: BOB.parse().unwrap(),
                },
            ),
            authentication_data: DSAuthData::Anonymous,
        };
        let (s, response) = b
            .client
            .ds_request(
                &domain("a.example"),
                DsEndpoint::ExternalCommitInformation,
                &ask,
            )
            .await
            .unwrap();
        let DSResponseBody::Error(e) = response.response_body else {
            panic!("{response:?}")
        };
        assert_eq!((s, e.code), (code.http_status(), code), "{e}");
    }

    // A non-member's operation: Mallory of b.example signs a message for
    // a leaf that is not hers.
    let mallory = client("mimi://b.example/d/mallory/x");
    let DSRequestBody::SendMessage(body) = DSRequest::decode_exact(&message, &Limits::default())
        .unwrap()
        .request_body
    else {
        panic!()
    };
    for index in [0, 9] {
        let forged = mallory
            .sign_request(DSRequestBody::SendMessage(body.clone()), index)
            .unwrap();
        let (s, response) = b
            .client
            .ds_request(&domain("a.example"), DsEndpoint::GroupOperation, &forged)
            .await
            .unwrap();
        let DSResponseBody::Error(e) = response.response_body else {
            panic!("{response:?}")
        };
        assert_eq!(s, 403, "{e}");
        assert!(
            matches!(
                e.code,
                ErrorCode::NotAMember | ErrorCode::ClientSignatureInvalid
            ),
            "{e}"
        );
    }

    // /verification_key: another provider's keys 421; its own 200 (also
    // for a GET without a body).
    let ask = VerificationKeyRequest {
        version: 1,
        provider: domain("c.example"),
    }
    .to_bytes()
    .unwrap();
    let (s, body, _) = raw(
        &http,
        &f,
        "POST",
        "/verification_key",
        std::slice::from_ref(&ct),
        ask,
    )
    .await;
    let VerificationKeyResult::Error(e) =
        VerificationKeyResponse::decode_exact(&body, &Limits::default())
            .unwrap()
            .result
    else {
        panic!()
    };
    assert_eq!((s, e.code), (421, ErrorCode::WrongRecipient));
    let (s, body, _) = raw(&http, &f, "GET", "/verification_key", &[], vec![]).await;
    assert_eq!(s, 200);
    let VerificationKeyResult::Ok(ok) =
        VerificationKeyResponse::decode_exact(&body, &Limits::default())
            .unwrap()
            .result
    else {
        panic!()
    };
    assert_eq!(ok.provider, domain("a.example"));
    assert_eq!(ok.keys, vec![a.keys.current().verification_key().clone()]);

    assert_eq!(
        trace(a, &g.id).await,
        before,
        "a refused request left a trace"
    );

    // Replay: the first use is accepted, the second refused.
    let header = signed(&message, f.clock.now());
    let hs = [ct.clone(), (PROVIDER_SIGNATURE_HEADER, header)];
    let (s, body, _) = raw(&http, &f, "POST", path, &hs, message.clone()).await;
    assert_eq!(
        s,
        200,
        "{:?}",
        DSResponse::decode_exact(&body, &Limits::default())
    );
    let after_first = trace(a, &g.id).await;
    let (s, body, _) = raw(&http, &f, "POST", path, &hs, message.clone()).await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);
    assert_eq!(trace(a, &g.id).await, after_first, "a replay left a trace");
}

/// A stream of byte chunks for a chunked body.
fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_in_mtls_mode() {
    let f = Federation::new(&two(AuthMode::Mtls)).await;
    let mut g = group(&f).await;
    let a = f.p("a.example");
    let path = "/group_operation";
    let message = g
        .bob
        .send_message(&g.id, b"hi")
        .unwrap()
        .to_bytes()
        .unwrap();
    let ct = ("content-type", OCTET.to_string());
    let sender = (SENDER_HEADER, "b.example".to_string());
    let before = trace(a, &g.id).await;

    // No client certificate: the handshake succeeds, the request gets 401.
    let none = f.raw_client(None);
    let (s, body, _) = raw(
        &none,
        &f,
        "POST",
        path,
        &[ct.clone(), sender.clone()],
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);

    // A certificate for another domain.
    let carol = f.raw_client(Some(f.cert_for(&["c.example"])));
    let (s, body, _) = raw(
        &carol,
        &f,
        "POST",
        path,
        &[ct.clone(), sender.clone()],
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);
    // A wildcard does not match.
    let wild = f.raw_client(Some(f.cert_for(&["*.example"])));
    let (s, body, _) = raw(
        &wild,
        &f,
        "POST",
        path,
        &[ct.clone(), sender.clone()],
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);
    // Several names and no header naming the sender.
    let two_names = f.raw_client(Some(f.cert_for(&["b.example", "c.example"])));
    let (s, body, _) = raw(
        &two_names,
        &f,
        "POST",
        path,
        std::slice::from_ref(&ct),
        message.clone(),
    )
    .await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);

    // A certificate from another CA fails the handshake.
    let other_ca = Pki::new("another CA");
    let stranger = f.raw_client(Some(other_ca.leaf(&["b.example"], &[])));
    let err = stranger
        .post(format!("https://{}{path}", a.addr))
        .header("content-type", OCTET)
        .header(SENDER_HEADER, "b.example")
        .body(message.clone())
        .send()
        .await;
    assert!(err.is_err(), "{err:?}");
    assert_eq!(
        trace(a, &g.id).await,
        before,
        "a refused request left a trace"
    );

    // The single name of the certificate names the sender.
    let bob_cert = f.raw_client(Some(f.cert_for(&["b.example"])));
    let (s, body, _) = raw(
        &bob_cert,
        &f,
        "POST",
        path,
        std::slice::from_ref(&ct),
        message.clone(),
    )
    .await;
    assert_eq!(
        s,
        200,
        "{:?}",
        DSResponse::decode_exact(&body, &Limits::default())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_is_refused_in_the_handshake() {
    let f = Federation::new(&two(AuthMode::Signature)[..1]).await;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(f.roots.clone())
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(f.p("a.example").addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("a.example").unwrap();
    assert!(connector.connect(name, tcp).await.is_err());
    // The same with TLS 1.3 succeeds.
    let config = tls::client_config(f.roots.clone(), None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(f.p("a.example").addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("a.example").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sender_gets_503() {
    // x.example's DS is a closed port: its keys cannot be fetched.
    let f = Federation::with_overrides(&two(AuthMode::Signature), &[("x.example", "127.0.0.9:9")])
        .await;
    let http = f.raw_client(None);
    let key = ProviderKey::generate(f.clock.now() - 10, f.clock.now() + 1000).unwrap();
    let body = vec![0u8; 3];
    let header = sign(
        &key,
        "x.example",
        "a.example",
        "POST",
        "/group_operation",
        &body,
        f.clock.now(),
    );
    let hs = [
        ("content-type", OCTET.to_string()),
        (PROVIDER_SIGNATURE_HEADER, header),
    ];
    let (s, body, headers) = raw(&http, &f, "POST", "/group_operation", &hs, body).await;
    assert_code(s, &body, ErrorCode::Unavailable);
    assert!(headers.get("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation() {
    let t = now();
    let old = ProviderKey::generate(t - 1000, t + 1000).unwrap();
    let new = ProviderKey::generate(t - 10, t + 100_000).unwrap();
    let mut setups = two(AuthMode::Signature);
    setups[1].keys = Some(vec![old.clone(), new.clone()]);
    let f = Federation::new(&setups).await;
    f.clock.set(t);
    let mut g = group(&f).await;
    let http = f.raw_client(None);
    let path = "/group_operation";
    let ct = ("content-type", OCTET.to_string());
    let send = async |g: &mut Group, key: &ProviderKey, at: u64| {
        let message = g
            .bob
            .send_message(&g.id, b"rotating")
            .unwrap()
            .to_bytes()
            .unwrap();
        let header = sign(key, "b.example", "a.example", "POST", path, &message, at);
        raw(
            &http,
            &f,
            "POST",
            path,
            &[ct.clone(), (PROVIDER_SIGNATURE_HEADER, header)],
            message,
        )
        .await
    };
    // During the overlap both keys are accepted.
    assert_eq!(send(&mut g, &old, t).await.0, 200);
    assert_eq!(send(&mut g, &new, t).await.0, 200);
    // Within the 300 s grace after the old key's not_after: still accepted.
    f.clock.set(t + 1000 + 300);
    assert_eq!(send(&mut g, &old, t + 1300).await.0, 200);
    // After it: refused, the new key still accepted.
    f.clock.set(t + 1000 + 301);
    let before = trace(f.p("a.example"), &g.id).await;
    let (s, body, _) = send(&mut g, &old, t + 1301).await;
    assert_code(s, &body, ErrorCode::ProviderAuthenticationFailed);
    assert_eq!(trace(f.p("a.example"), &g.id).await, before);
    assert_eq!(send(&mut g, &new, t + 1301).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_through_the_well_known_path_and_overrides() {
    let f = Federation::new(&two(AuthMode::Signature)).await;
    let a = f.p("a.example");
    // A client without overrides: a.example and ds.a.example resolve to
    // a.example's address, and the well-known port is a.example's.
    let mut config = ClientConfig::new(
        domain("b.example"),
        f.p("b.example").keys.clone(),
        tls::client_config(f.roots.clone(), None).unwrap(),
    );
    config.discovery.well_known_port = a.addr.port();
    config.resolve = vec![
        ("a.example".into(), a.addr),
        ("ds.a.example".into(), a.addr),
        // A closed port.
        ("nowhere.example".into(), "127.0.0.9:9".parse().unwrap()),
    ];
    let client = TransportClient::new(config, f.clock.clone()).unwrap();
    let found = client.discover(&domain("a.example")).await.unwrap();
    assert_eq!(found.to_string(), format!("ds.a.example:{}", a.addr.port()));
    // A signed request through the discovered host reaches the hub.
    let mut g = group(&f).await;
    let message = g.bob.send_message(&g.id, b"via discovery").unwrap();
    let (s, response) = client
        .ds_request(&domain("a.example"), DsEndpoint::GroupOperation, &message)
        .await
        .unwrap();
    assert_eq!(s, 200, "{response:?}");
    // An unreachable domain fails, then backs off without asking again.
    let err = client
        .discover(&domain("nowhere.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Failed { .. }), "{err}");
    let err = client
        .discover(&domain("nowhere.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::BackingOff { .. }), "{err}");
    f.clock.advance(5);
    let err = client
        .discover(&domain("nowhere.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Failed { .. }), "{err}");
    // An override wins over the network.
    let found = f
        .p("b.example")
        .client
        .discover(&domain("a.example"))
        .await
        .unwrap();
    assert_eq!(found.to_string(), a.addr.to_string());
}

/// `/deliver_message` from the group's hub reaches the recipient's queue
/// once (a repeat is answered as the first); a delivery from a provider
/// that is not the group's hub, an unsigned one and an undecodable one are
/// refused with a `QueueingServiceResponse` and queue nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_over_https() {
    let f = Federation::new(&two(AuthMode::Signature)).await;
    let mut g = group(&f).await;
    let a = f.p("a.example");
    let b = f.p("b.example");
    b.service
        .store()
        .add_client(BOB.into(), "mimi://b.example/u/bob".into(), 0)
        .await
        .unwrap();
    let DSRequestBody::SendMessage(m) = g.bob.send_message(&g.id, b"hi").unwrap().request_body
    else {
        unreachable!()
    };
    let delivery = |sender: &str, id: u8| QueueingServiceRequest {
        version: 1,
        sender: domain(sender),
        recipient: domain("b.example"),
        message_id: MessageId([id; 16]),
        payload: QueueingServicePayload::DeliverMessage(DeliverMessage {
            group_id: GroupIdField(g.id.clone()),
            epoch: 1,
            recipients: vec![BOB.parse().unwrap()],
            message: DeliverableMessage::from_bytes(m.application_message.as_bytes()).unwrap(),
        }),
    };
    let answer = |reply: mimid_transport::Reply| {
        (
            reply.status,
            QueueingServiceResponse::decode_exact(&reply.body, &Limits::default()).unwrap(),
        )
    };
    let queue = async || {
        b.service
            .store()
            .client_queue(BOB, 0, 10)
            .await
            .unwrap()
            .len()
    };
    let to_b = domain("b.example");

    // From the hub, twice: queued once, the same answer.
    let body = delivery("a.example", 1).to_bytes().unwrap();
    for _ in 0..2 {
        let reply = a.client.post(&to_b, "/deliver_message", body.clone());
        let (status, response) = answer(reply.await.unwrap());
        assert_eq!(status, 200, "{response:?}");
        assert_eq!(response.message_id, MessageId([1; 16]));
        assert!(
            matches!(response.result, QueueingServiceResult::Ok(ref ok) if ok.unknown_recipients.is_empty())
        );
    }
    assert_eq!(queue().await, 1);

    // b.example delivering to itself for a group a.example hosts: 403.
    let forged = delivery("b.example", 2).to_bytes().unwrap();
    let reply = b.client.post(&to_b, "/deliver_message", forged);
    let (status, response) = answer(reply.await.unwrap());
    assert_eq!(status, 403, "{response:?}");
    assert_eq!(response.message_id, MessageId([2; 16]));

    // Unsigned: 401, nothing to echo.
    let http = f.raw_client(None);
    let url = format!("https://{}/deliver_message", b.addr);
    let reply = http
        .post(url)
        .header("content-type", OCTET)
        .body(delivery("a.example", 3).to_bytes().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 401);
    let response =
        QueueingServiceResponse::decode_exact(&reply.bytes().await.unwrap(), &Limits::default())
            .unwrap();
    assert_eq!(response.message_id, MessageId([0; 16]));

    // Signed but cut short: 400, its message id echoed.
    let mut cut = delivery("a.example", 4).to_bytes().unwrap();
    cut.truncate(cut.len() - 10);
    let reply = a.client.post(&to_b, "/deliver_message", cut);
    let (status, response) = answer(reply.await.unwrap());
    assert_eq!(status, 400, "{response:?}");
    assert_eq!(response.message_id, MessageId([4; 16]));
    assert_eq!(queue().await, 1);
}

/// Provider signatures of concurrent requests are checked in batches with
/// the hub's client signatures: the bad ones among many good ones are
/// refused (401) and change nothing, the good ones are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_bad_provider_signatures_among_them() {
    let f = Federation::new(&two(AuthMode::Signature)).await;
    let mut g = group(&f).await;
    let a = f.p("a.example");
    let key = f.p("b.example").keys.current().clone();
    let path = "/group_operation";
    let url = format!("https://{}{path}", a.addr);
    let (_, messages_before) = trace(a, &g.id).await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..48u32 {
        let body = g
            .bob
            .send_message(&g.id, format!("m{i}").as_bytes())
            .unwrap()
            .to_bytes()
            .unwrap();
        let header = sign(
            &key,
            "b.example",
            "a.example",
            "POST",
            path,
            &body,
            f.clock.now(),
        );
        // Every third body is changed after signing.
        let bad = i % 3 == 0;
        let mut sent = body;
        if bad {
            let last = sent.len() - 1;
            sent[last] ^= 1;
        }
        let request = f
            .raw_client(None)
            .post(url.clone())
            .header("content-type", OCTET)
            .header(PROVIDER_SIGNATURE_HEADER, header)
            .body(sent);
        requests.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (bad, status, response.bytes().await.unwrap().to_vec())
        });
    }
    let mut accepted = 0;
    while let Some(done) = requests.join_next().await {
        let (bad, status, body) = done.unwrap();
        if bad {
            assert_code(status, &body, ErrorCode::ProviderAuthenticationFailed);
        } else {
            assert_eq!(status, 200, "{}", ds_error(&body));
            accepted += 1;
        }
    }
    assert_eq!(accepted, 32);
    let (_, messages_after) = trace(a, &g.id).await;
    assert_eq!(messages_after, messages_before + 32);
}
