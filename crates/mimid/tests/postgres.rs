//! Two `mimid serve` processes for one domain on one PostgreSQL database
//! (a throwaway cluster), with real OpenMLS clients spreading their
//! requests over both through the client API: concurrent commits for one
//! group yield one accepted per epoch, every message reaches every
//! recipient exactly once, a one-time KeyPackage is served once, and a
//! signed request replayed to the other process is refused. Then one
//! process is killed with SIGKILL under load and started again, and the
//! database is restarted under load. With Privacy Pass guarding an
//! endpoint, a token spent on one process is refused by the other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mimid_client::MimiClient;
use mimid_client::api::{ProviderApi, SigningKey};
use mimid_store::throwaway::{Sync, ThrowawayCluster};
use mimid_store::{PostgresOptions, PostgresStore, Store};
use mimid_transport::signature::{SignedRequest, encode_header, random_nonce};
use mimid_transport::{Clock as _, ProviderKeys, SystemClock, tls};
use mimid_wire::{
    ClientId, ConnectionKeyPackageRequest, DSAuthData, DSRequest, DSRequestBody, DSResponseBody,
    DeliverableMessage, GroupId, GroupIdField, GroupKind, UserId, WelcomeMessage, Wire,
};
use privacypass::auth::authenticate::parse_www_authenticate_header;
use privacypass::auth::authorize::build_authorization_header;
use privacypass::public_tokens::{PublicKey, TokenRequest, TokenResponse};
use privacypass::{Deserialize as _, Serialize as _};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

/// The two processes of a.example, and b.example (a peer, on SQLite).
const A1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);
const A2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 22);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 23);

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Certificates, provider keys and configurations in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    ports: [u16; 3],
    url: String,
    /// Appended to a.example's configurations.
    extra: String,
}

impl Setup {
    fn new(url: String) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
        let issuer = Issuer::new(ca_params, ca_key);
        for (domain, ips) in [("a.example", vec![A1, A2]), ("b.example", vec![B])] {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(vec![domain.to_string()]).expect("params");
            for ip in ips {
                params
                    .subject_alt_names
                    .push(SanType::IpAddress(IpAddr::V4(ip)));
            }
            let cert = params.signed_by(&key, &issuer).expect("certificate");
            std::fs::write(dir.path().join(format!("{domain}.pem")), cert.pem()).expect("write");
            std::fs::write(
                dir.path().join(format!("{domain}.key.pem")),
                key.serialize_pem(),
            )
            .expect("write");
            let status = Command::new(env!("CARGO_BIN_EXE_mimid"))
                .args(["keygen", "--out"])
                .arg(dir.path().join(format!("{domain}.provider")))
                .status()
                .expect("keygen");
            assert!(status.success());
        }
        let ports = [free_port(A1), free_port(A2), free_port(B)];
        Setup {
            dir,
            ports,
            url,
            extra: String::new(),
        }
    }

    /// a.example's processes guard `/verification_key` with Privacy Pass,
    /// with an issuer key of their own (`mimid privacy-pass keygen`).
    fn with_privacy_pass(mut self) -> Setup {
        let key = self.path("issuer.pem");
        let status = Command::new(env!("CARGO_BIN_EXE_mimid"))
            .args(["privacy-pass", "keygen", "--out"])
            .arg(&key)
            .stdout(Stdio::null())
            .status()
            .expect("privacy-pass keygen");
        assert!(status.success());
        self.extra = format!(
            "\n[privacy_pass]\nendpoints = [\"/verification_key\"]\nissuer_key = \"{}\"\n",
            key.display()
        );
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the configuration of process `index` (0, 1: a.example on
    /// PostgreSQL; 2: b.example on SQLite) and returns its path.
    fn config(&self, index: usize) -> PathBuf {
        let (domain, ip, peer, peer_at) = match index {
            0 => (
                "a.example",
                A1,
                "b.example",
                SocketAddr::new(B.into(), self.ports[2]),
            ),
            1 => (
                "a.example",
                A2,
                "b.example",
                SocketAddr::new(B.into(), self.ports[2]),
            ),
            _ => (
                "b.example",
                B,
                "a.example",
                SocketAddr::new(A1.into(), self.ports[0]),
            ),
        };
        let store = if domain == "a.example" {
            format!(
                "postgres_url = \"{}\"\npostgres_wait_ms = 500\n{}",
                self.url, self.extra
            )
        } else {
            format!("path = \"{}\"", self.path("b.sqlite").display())
        };
        let dir = self.dir.path().display();
        let config = format!(
            r#"
[provider]
domain = "{domain}"
listen = "{ip}:{port}"

[tls]
certificate = "{dir}/{domain}.pem"
key = "{dir}/{domain}.key.pem"
trust_anchors = ["{dir}/ca.pem"]
webpki_roots = false

[federation]
provider_keys = ["{dir}/{domain}.provider"]

[federation.peers."{peer}"]
ds_authority = "{peer_at}"

[store]
{store}
"#,
            port = self.ports[index],
        );
        let path = self.path(&format!("mimid-{index}.toml"));
        std::fs::write(&path, config).expect("write config");
        path
    }

    /// Starts process `index` and waits until it serves.
    fn start(&self, index: usize) -> Server {
        // Its log goes to a file beside its configuration.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.path(&format!("mimid-{index}.log")))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mimid"))
            .arg("serve")
            .arg("--config")
            .arg(self.config(index))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("mimid serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        assert!(line.starts_with("serving "), "process {index}: {line:?}");
        Server(child)
    }

    fn base(&self, index: usize) -> String {
        let ip = [A1, A2, B][index];
        format!("https://{ip}:{}", self.ports[index])
    }

    fn http(&self) -> reqwest::Client {
        let anchors = tls::load_certs(&self.path("ca.pem")).expect("CA");
        let roots = tls::root_store(&anchors, false).expect("roots");
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config(roots, None).expect("TLS"))
            .build()
            .expect("HTTP client")
    }
}

/// A `mimid serve` process, killed when dropped.
struct Server(Child);

impl Server {
    /// SIGKILL: no chance to finish anything.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client of a.example with a handle on each of its two processes.
struct Device {
    mls: MimiClient,
    apis: [ProviderApi; 2],
    /// Queue position read up to.
    read: u64,
}

const ALICE: &str = "mimi://a.example/d/alice/phone";
const BOB: &str = "mimi://a.example/d/bob/phone";
const CAROL: &str = "mimi://a.example/d/carol/phone";
const DAVE: &str = "mimi://a.example/d/dave/phone";

fn user_of(client: &str) -> UserId {
    client.parse::<ClientId>().expect("client id").user()
}

/// Adds the device's user, enrols it through process `via`, and gives it a
/// handle on the other process with the same key.
async fn enrol(setup: &Setup, store: &PostgresStore, id: &str, via: usize) -> Device {
    let client: ClientId = id.parse().expect("client id");
    let user = client.user();
    let now = SystemClock.now();
    store
        .add_user(user.to_string(), now)
        .await
        .expect("add user");
    let secret = mimid_transport::server::client_api::invite(store, &user, 3600, now)
        .await
        .expect("invite");
    let key = SigningKey::generate().expect("key");
    let key_bytes = key.to_bytes();
    let api = ProviderApi::enrol(
        setup.http(),
        &setup.base(via),
        "a.example",
        &secret,
        &user,
        client.device(),
        key,
    )
    .await
    .expect("enrol");
    let other = ProviderApi::resume(
        setup.http(),
        &setup.base(1 - via),
        "a.example",
        client.clone(),
        SigningKey::from_bytes(&key_bytes),
    );
    let apis = if via == 0 { [api, other] } else { [other, api] };
    Device {
        mls: MimiClient::new(client).expect("MLS client"),
        apis,
        read: 0,
    }
}

/// Reads the device's queue through process `via` until it holds `n`
/// messages (or fails after a while); acknowledges them.
async fn receive(device: &mut Device, via: usize, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} got {} of {n} messages",
            device.mls.id(),
            got.len()
        );
        let read = device.apis[via]
            .queue(device.read, 2)
            .await
            .expect("queue read");
        for message in read.messages {
            device.read = message.seq;
            got.push(message.message);
        }
    }
    device.apis[1 - via]
        .acknowledge(device.read)
        .await
        .expect("acknowledge");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_database() {
    let cluster = ThrowawayCluster::start(Sync::Off).expect("PostgreSQL");
    let setup = Setup::new(cluster.url());
    let store = PostgresStore::connect(&PostgresOptions::new(cluster.url()))
        .await
        .expect("store");
    let _a1 = setup.start(0);
    let _a2 = setup.start(1);
    let _b = setup.start(2);

    let mut alice = enrol(&setup, &store, ALICE, 0).await;
    let mut bob = enrol(&setup, &store, BOB, 1).await;
    let mut carol = enrol(&setup, &store, CAROL, 0).await;
    let dave = enrol(&setup, &store, DAVE, 1).await;

    // Dave has one one-time connection KeyPackage and a last-resort one;
    // 32 requests spread over both processes at once get the one-time
    // package once between them.
    let one_time = dave.mls.key_package(true, false).expect("KeyPackage");
    let last_resort = dave.mls.key_package(true, true).expect("KeyPackage");
    dave.apis[0]
        .publish_key_packages(&[one_time.clone(), last_resort.clone()])
        .await
        .expect("publish");
    let dave_user = user_of(DAVE);
    let requests = 32;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(requests));
    let fetches: Vec<_> = (0..requests)
        .map(|i| {
            let api = [&alice, &bob, &carol][i % 3].apis[i % 2].clone();
            let target = dave_user.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                api.fetch_key_packages(&target, true, &[]).await
            })
        })
        .collect();
    let mut handed = Vec::new();
    for fetch in fetches {
        handed.extend(fetch.await.expect("task").expect("fetch"));
    }
    assert_eq!(handed.len(), requests);
    let served_once = handed
        .iter()
        .filter(|kp| kp.as_bytes() == one_time.as_bytes())
        .count();
    let last = handed
        .iter()
        .filter(|kp| kp.as_bytes() == last_resort.as_bytes())
        .count();
    assert_eq!(
        (served_once, last),
        (1, requests - 1),
        "the one-time package went out once"
    );

    // A group on a.example with Alice, Bob and Carol, each using both
    // processes.
    for device in [&bob, &carol] {
        let packages = [
            device.mls.key_package(false, false).expect("KeyPackage"),
            device.mls.key_package(false, true).expect("KeyPackage"),
        ];
        device.apis[1]
            .publish_key_packages(&packages)
            .await
            .expect("publish");
        store
            .add_connection(
                device.mls.id().user().to_string(),
                user_of(ALICE).to_string(),
                SystemClock.now(),
            )
            .await
            .expect("connection");
    }
    let group = new_group(&mut alice, [&mut bob, &mut carol]).await;
    in_sync(&group, &[&alice, &bob, &carol]);

    // Bob and Carol commit at the same epoch, each through a different
    // process, at once: one is accepted, the other refused; the others
    // apply the winner's commit from their queues.
    let rounds = 4;
    let start = alice.mls.epoch_and_tree_hash(&group).expect("epoch").0;
    let mut accepted = 0;
    for round in 0..rounds {
        let from_bob = bob.mls.update(&group).expect("update");
        let from_carol = carol.mls.update(&group).expect("update");
        let (bob_api, carol_api) = (
            bob.apis[round % 2].clone(),
            carol.apis[1 - round % 2].clone(),
        );
        let (b, c) = tokio::join!(bob_api.submit(&from_bob), carol_api.submit(&from_carol));
        let (winner, loser, refusal) = match (b, c) {
            (Ok(_), Err(refusal)) => (&mut bob, &mut carol, refusal),
            (Err(refusal), Ok(_)) => (&mut carol, &mut bob, refusal),
            outcome => panic!("round {round}: both or neither accepted: {outcome:?}"),
        };
        // The loser is told it is behind, as within one process.
        assert!(
            matches!(
                &refusal,
                mimid_client::api::ApiError::Refused { status: 409, code, .. } if code == "wrong_epoch"
            ),
            "{refusal}"
        );
        accepted += 1;
        winner.mls.merge_pending_commit(&group).expect("merge");
        loser.mls.clear_pending_commit(&group).expect("clear");
        for (i, device) in [&mut alice, loser].into_iter().enumerate() {
            let commit = receive(device, (round + i) % 2, 1).await.remove(0);
            let commit = DeliverableMessage::from_bytes(&commit).expect("a message");
            device.mls.process(&commit).expect("apply the commit");
        }
        in_sync(&group, &[&alice, &bob, &carol]);
    }
    let end = alice.mls.epoch_and_tree_hash(&group).expect("epoch").0;
    assert_eq!((accepted, end - start), (rounds, rounds as u64));

    // Everyone sends ten messages, alternating processes; every recipient
    // reads them, alternating processes, each exactly once.
    let per_sender = 10;
    let mut sends = Vec::new();
    for i in 0..per_sender {
        for device in [&mut alice, &mut bob, &mut carol] {
            let text = format!("{} #{i}", device.mls.id());
            let request = device
                .mls
                .send_message(&group, text.as_bytes())
                .expect("send");
            sends.push((device.apis[i % 2].clone(), request));
        }
    }
    // Submitted concurrently, in per-sender order within each task.
    let mut by_sender: BTreeMap<usize, Vec<(ProviderApi, DSRequest)>> = BTreeMap::new();
    for (n, send) in sends.into_iter().enumerate() {
        by_sender.entry(n % 3).or_default().push(send);
    }
    let tasks: Vec<_> = by_sender
        .into_values()
        .map(|sends| {
            tokio::spawn(async move {
                for (api, request) in sends {
                    api.submit(&request).await.expect("send message");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    for (index, device) in [&mut alice, &mut bob, &mut carol].into_iter().enumerate() {
        let mut got = BTreeSet::new();
        let messages = receive(device, index % 2, 2 * per_sender).await;
        for message in messages {
            let message = DeliverableMessage::from_bytes(&message).expect("a message");
            let text = device
                .mls
                .process(&message)
                .expect("decrypt")
                .expect("an application message");
            assert!(got.insert(text), "a message arrived twice");
        }
        let me = device.mls.id().to_string();
        let expected: BTreeSet<Vec<u8>> = [ALICE, BOB, CAROL]
            .into_iter()
            .filter(|sender| *sender != me)
            .flat_map(|sender| (0..per_sender).map(move |i| format!("{sender} #{i}").into_bytes()))
            .collect();
        assert_eq!(got, expected, "{me}");
        // Nothing more, on either process.
        for api in &device.apis {
            let rest = api.queue(device.read, 0).await.expect("queue");
            assert!(
                rest.messages.is_empty(),
                "{me} has more: {}",
                rest.messages.len()
            );
        }
    }
    assert_eq!(
        store.inbox_count().await.expect("count"),
        0,
        "all acknowledged"
    );

    // b.example's signed request, accepted by one process, is refused when
    // replayed to the other (and to the first).
    let body = ConnectionKeyPackageRequest {
        version: 1,
        requester: "mimi://b.example/u/erin".parse().expect("user"),
        target: dave_user.clone(),
    }
    .to_bytes()
    .expect("encode");
    let b_key = ProviderKeys::load(&[setup.path("b.example.provider")]).expect("b's key");
    let signature = SignedRequest {
        sender: &"b.example".parse().expect("domain"),
        recipient: &"a.example".parse().expect("domain"),
        method: "POST",
        path: "/connection_key_packages",
        body: &body,
        timestamp: SystemClock.now(),
        nonce: random_nonce().expect("nonce"),
    }
    .sign(b_key.current())
    .expect("sign");
    let header = encode_header(&signature).expect("header");
    let http = setup.http();
    let mut statuses = Vec::new();
    for via in [0, 1, 0] {
        let response = http
            .post(format!("{}/connection_key_packages", setup.base(via)))
            .header("content-type", "application/octet-stream")
            .header(
                mimid_transport::signature::PROVIDER_SIGNATURE_HEADER,
                &header,
            )
            .body(body.clone())
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 401, 401], "the replay is refused by both");

    store.close().await.expect("close");
}

/// Alice creates a group on a.example and adds the joiners (with the
/// regular KeyPackages their providers serve her), who join from the
/// Welcome in their queues; requests go through both processes.
async fn new_group(alice: &mut Device, joiners: [&mut Device; 2]) -> GroupId {
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(group)) =
        alice.apis[0].submit(&ask).await.expect("group id")
    else {
        panic!("no group id");
    };
    let create = alice
        .mls
        .create_group(&group, GroupKind::Regular)
        .expect("create");
    alice.apis[1].submit(&create).await.expect("create group");
    let mut packages = Vec::new();
    for joiner in &joiners {
        packages.extend(
            alice.apis[1]
                .fetch_key_packages(&joiner.mls.id().user(), false, &[])
                .await
                .expect("regular KeyPackages"),
        );
    }
    let add = alice.mls.add(&group, &packages, false).expect("add");
    alice.apis[0].submit(&add).await.expect("add users");
    alice.mls.merge_pending_commit(&group).expect("merge");
    let epoch = alice.mls.epoch_and_tree_hash(&group).expect("epoch").0;
    for (via, (device, package)) in joiners.into_iter().zip(&packages).enumerate() {
        let welcome = receive(device, via, 1).await.remove(0);
        let welcome = WelcomeMessage::from_bytes(&welcome).expect("a Welcome");
        let info = device
            .mls
            .welcome_information_request(&group, epoch, package)
            .expect("request");
        let DSResponseBody::WelcomeInfo(tree) = device.apis[1 - via]
            .submit(&info)
            .await
            .expect("welcome information")
        else {
            panic!("no welcome information");
        };
        device.mls.join(&welcome, &tree).expect("join");
    }
    group
}

/// Every device's epoch and tree hash agree.
fn in_sync(group: &GroupId, devices: &[&Device]) {
    let states: Vec<_> = devices
        .iter()
        .map(|d| d.mls.epoch_and_tree_hash(group).expect("in the group"))
        .collect();
    assert!(
        states.windows(2).all(|w| w[0] == w[1]),
        "devices disagree: {:?}",
        states.iter().map(|s| s.0).collect::<Vec<_>>()
    );
}

const ERIN: &str = "mimi://b.example/d/erin/phone";

/// Enrols a client of b.example (one process, SQLite) through its client
/// API; both handles are on b.example.
async fn enrol_at_b(setup: &Setup, id: &str, alice: &UserId) -> Device {
    let client: ClientId = id.parse().expect("client id");
    let user = client.user();
    let now = SystemClock.now();
    // The operator's view of b.example's store, beside its process.
    let store =
        mimid_store::SqliteStore::open(&setup.path("b.sqlite"), mimid_store::Durability::Process)
            .await
            .expect("b's store");
    store
        .add_user(user.to_string(), now)
        .await
        .expect("add user");
    store
        .add_connection(user.to_string(), alice.to_string(), now)
        .await
        .expect("connection");
    let secret = mimid_transport::server::client_api::invite(&store, &user, 3600, now)
        .await
        .expect("invite");
    store.close().await.expect("close");
    let key = SigningKey::generate().expect("key");
    let api = ProviderApi::enrol(
        setup.http(),
        &setup.base(2),
        "b.example",
        &secret,
        &user,
        client.device(),
        key,
    )
    .await
    .expect("enrol");
    Device {
        mls: MimiClient::new(client).expect("MLS client"),
        apis: [api.clone(), api],
        read: 0,
    }
}

/// A group on a.example: Alice and Bob (a.example, on both processes) and
/// Erin (b.example, reached through the outbox).
async fn conversation(setup: &Setup, store: &PostgresStore) -> (GroupId, Device, Device, Device) {
    let mut alice = enrol(setup, store, ALICE, 0).await;
    let mut bob = enrol(setup, store, BOB, 1).await;
    let mut erin = enrol_at_b(setup, ERIN, &user_of(ALICE)).await;
    store
        .add_connection(
            user_of(BOB).to_string(),
            user_of(ALICE).to_string(),
            SystemClock.now(),
        )
        .await
        .expect("connection");
    for device in [&bob, &erin] {
        let packages = [
            device.mls.key_package(false, false).expect("KeyPackage"),
            device.mls.key_package(false, true).expect("KeyPackage"),
        ];
        device.apis[0]
            .publish_key_packages(&packages)
            .await
            .expect("publish");
    }
    let group = new_group(&mut alice, [&mut bob, &mut erin]).await;
    in_sync(&group, &[&alice, &bob, &erin]);
    (group, alice, bob, erin)
}

/// What a sender's requests came to.
#[derive(Default)]
struct Sent {
    /// Plaintexts of the messages the provider acknowledged.
    acknowledged: Vec<Vec<u8>>,
    /// Plaintexts of the messages whose request failed (may or may not
    /// have been applied; never twice).
    failed: Vec<Vec<u8>>,
    /// HTTP statuses of refusals.
    refusals: Vec<u16>,
}

/// Sends `n` messages, one every `pace`, through the sender's handles in
/// turn (`vias`), recording which were acknowledged.
async fn send_load(
    mut device: Device,
    group: GroupId,
    n: usize,
    vias: &'static [usize],
    pace: Duration,
) -> (Device, Sent) {
    let mut sent = Sent::default();
    for i in 0..n {
        let text = format!("{} #{i}", device.mls.id()).into_bytes();
        let request = device.mls.send_message(&group, &text).expect("send");
        let via = vias[i % vias.len()];
        match device.apis[via].submit(&request).await {
            Ok(_) => sent.acknowledged.push(text),
            Err(e) => {
                if let mimid_client::api::ApiError::Refused { status, .. } = e {
                    sent.refusals.push(status);
                }
                sent.failed.push(text);
            }
        }
        tokio::time::sleep(pace).await;
    }
    (device, sent)
}

/// Reads everything the device's queue holds until `expected` (and
/// nothing twice) has arrived; returns what arrived.
async fn read_all(device: &mut Device, expected: &BTreeSet<Vec<u8>>) -> BTreeSet<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = BTreeSet::new();
    let mut via = 0;
    while !expected.is_subset(&got) {
        assert!(
            Instant::now() < deadline,
            "{} is missing {} acknowledged messages",
            device.mls.id(),
            expected.difference(&got).count()
        );
        let read = device.apis[via].queue(device.read, 1).await.expect("queue");
        via = 1 - via;
        for message in read.messages {
            device.read = message.seq;
            let message = DeliverableMessage::from_bytes(&message.message).expect("a message");
            if let Some(text) = device.mls.process(&message).expect("decrypt") {
                assert!(
                    got.insert(text),
                    "{}: a message arrived twice",
                    device.mls.id()
                );
            }
        }
        device.apis[via]
            .acknowledge(device.read)
            .await
            .expect("ack");
    }
    got
}

/// Checks that each recipient got every acknowledged message of the
/// others exactly once, and of the failed ones at most once.
async fn check_delivery(recipients: &mut [&mut Device], sent: &[(String, Sent)]) {
    for device in recipients.iter_mut() {
        let me = device.mls.id().to_string();
        let expected: BTreeSet<Vec<u8>> = sent
            .iter()
            .filter(|(sender, _)| *sender != me)
            .flat_map(|(_, s)| s.acknowledged.iter().cloned())
            .collect();
        let may: BTreeSet<Vec<u8>> = sent
            .iter()
            .filter(|(sender, _)| *sender != me)
            .flat_map(|(_, s)| s.failed.iter().cloned())
            .collect();
        let got = read_all(device, &expected).await;
        // A last look for stragglers of the failed ones.
        let extra: Vec<_> = got.difference(&expected).collect();
        assert!(
            extra.iter().all(|m| may.contains(*m)),
            "{me} got messages nobody sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_under_load_loses_nothing_acknowledged() {
    let cluster = ThrowawayCluster::start(Sync::Off).expect("PostgreSQL");
    let setup = Setup::new(cluster.url());
    let store = PostgresStore::connect(&PostgresOptions::new(cluster.url()))
        .await
        .expect("store");
    let mut a1 = setup.start(0);
    let _a2 = setup.start(1);
    let _b = setup.start(2);
    let (group, alice, bob, mut erin) = conversation(&setup, &store).await;

    // Alice sends through both processes, Bob through the first only; the
    // first is killed in the middle and started again.
    let n = 40;
    let pace = Duration::from_millis(50);
    let alice_load = tokio::spawn(send_load(alice, group.clone(), n, &[0, 1], pace));
    let bob_load = tokio::spawn(send_load(bob, group.clone(), n, &[0], pace));
    tokio::time::sleep(pace * (n as u32) / 3).await;
    a1.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _a1 = setup.start(0);
    let (mut alice, alice_sent) = alice_load.await.expect("Alice's load");
    let (mut bob, bob_sent) = bob_load.await.expect("Bob's load");
    assert!(
        !alice_sent.failed.is_empty() || !bob_sent.failed.is_empty(),
        "the kill interrupted nothing"
    );
    assert!(alice_sent.acknowledged.len() > n / 2 && bob_sent.acknowledged.len() > n / 3);
    let sent = [(ALICE.to_string(), alice_sent), (BOB.to_string(), bob_sent)];
    check_delivery(&mut [&mut alice, &mut bob, &mut erin], &sent).await;
    in_sync(&group, &[&alice, &bob, &erin]);
    assert_eq!(
        store.dead_letters(10).await.expect("dead letters"),
        Vec::new()
    );
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restarted_under_load_is_waited_for() {
    let cluster = ThrowawayCluster::start(Sync::Off).expect("PostgreSQL");
    let setup = Setup::new(cluster.url());
    let store = PostgresStore::connect(&PostgresOptions::new(cluster.url()))
        .await
        .expect("store");
    let _a1 = setup.start(0);
    let _a2 = setup.start(1);
    let _b = setup.start(2);
    let (group, alice, bob, mut erin) = conversation(&setup, &store).await;

    let n = 60;
    let pace = Duration::from_millis(50);
    let alice_load = tokio::spawn(send_load(alice, group.clone(), n, &[0, 1], pace));
    let bob_load = tokio::spawn(send_load(bob, group.clone(), n, &[1, 0], pace));
    tokio::time::sleep(pace * (n as u32) / 4).await;
    cluster.stop().expect("stop PostgreSQL");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_server().expect("start PostgreSQL");
    let (mut alice, alice_sent) = alice_load.await.expect("Alice's load");
    let (mut bob, bob_sent) = bob_load.await.expect("Bob's load");
    // While it was down, requests were refused as unavailable (503), not
    // failed otherwise; once it was back they were served again.
    let refusals: Vec<u16> = [&alice_sent, &bob_sent]
        .iter()
        .flat_map(|s| s.refusals.iter().copied())
        .collect();
    assert!(
        !refusals.is_empty(),
        "nothing was refused while the database was down"
    );
    assert!(refusals.iter().all(|s| *s == 503), "{refusals:?}");
    for sent in [&alice_sent, &bob_sent] {
        let last = sent.acknowledged.last().expect("some acknowledged");
        assert!(
            last.ends_with(format!("#{}", n - 1).as_bytes()),
            "service did not resume by itself"
        );
    }
    let sent = [(ALICE.to_string(), alice_sent), (BOB.to_string(), bob_sent)];
    check_delivery(&mut [&mut alice, &mut bob, &mut erin], &sent).await;
    in_sync(&group, &[&alice, &bob, &erin]);
    store.close().await.expect("close");
}

/// `GET /verification_key` on process `index`: the status and the
/// `WWW-Authenticate` value.
async fn get(
    setup: &Setup,
    index: usize,
    token: Option<&reqwest::header::HeaderValue>,
) -> (u16, Option<reqwest::header::HeaderValue>) {
    let mut request = setup
        .http()
        .get(format!("{}/verification_key", setup.base(index)));
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let response = request.send().await.expect("request");
    (
        response.status().as_u16(),
        response.headers().get("www-authenticate").cloned(),
    )
}

/// A token of a.example's issuer, issued through process 0's client API.
async fn token(
    api: &ProviderApi,
    challenge: &reqwest::header::HeaderValue,
) -> reqwest::header::HeaderValue {
    let challenges = parse_www_authenticate_header(challenge).expect("challenge");
    let challenge = challenges.first().expect("a challenge");
    assert_eq!(challenge.token_challenge().issuer_name(), "a.example");
    let public_key = PublicKey::from_spki(challenge.token_key()).expect("token-key");
    let mut rng = blind_rsa_signatures::reexports::rand::rng();
    let (request, state) = TokenRequest::new(&mut rng, public_key, challenge.token_challenge())
        .expect("token request");
    let response = api
        .privacy_pass_token(&request.tls_serialize_detached().expect("encode"))
        .await
        .expect("issued");
    let token = TokenResponse::tls_deserialize_exact(&response)
        .expect("token response")
        .issue_token(&state)
        .expect("token");
    build_authorization_header(&token).expect("header").1
}

/// Privacy Pass: a token spent on one process is refused by the other,
/// and one token sent to both at once is accepted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_spent_on_one_process_is_refused_by_the_other() {
    let cluster = ThrowawayCluster::start(Sync::Off).expect("PostgreSQL");
    let setup = Setup::new(cluster.url()).with_privacy_pass();
    let store = PostgresStore::connect(&PostgresOptions::new(cluster.url()))
        .await
        .expect("store");
    let _servers = [setup.start(0), setup.start(1)];

    let user: UserId = "mimi://a.example/u/alice".parse().expect("user");
    let now = SystemClock.now();
    store
        .add_user(user.to_string(), now)
        .await
        .expect("add user");
    let secret = mimid_transport::server::client_api::invite(&store, &user, 3600, now)
        .await
        .expect("invite");
    let api = ProviderApi::enrol(
        setup.http(),
        &setup.base(0),
        "a.example",
        &secret,
        &user,
        "phone",
        SigningKey::generate().expect("key"),
    )
    .await
    .expect("enrol");

    let (status, challenge) = get(&setup, 1, None).await;
    assert_eq!(status, 401);
    let challenge = challenge.expect("WWW-Authenticate");
    assert_eq!(get(&setup, 0, None).await, (401, Some(challenge.clone())));

    // Spent on one process, refused by the other, both ways round.
    for (spend, replay) in [(0, 1), (1, 0)] {
        let token = token(&api, &challenge).await;
        assert_eq!(get(&setup, spend, Some(&token)).await, (200, None));
        assert_eq!(
            get(&setup, replay, Some(&token)).await,
            (401, Some(challenge.clone())),
            "spent on {spend}, replayed to {replay}"
        );
    }

    // One token sent to both at once: accepted once.
    for round in 0..5 {
        let token = token(&api, &challenge).await;
        let (first, second) =
            tokio::join!(get(&setup, 0, Some(&token)), get(&setup, 1, Some(&token)));
        let mut statuses = [first.0, second.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401], "round {round}");
    }
    store.close().await.expect("close");
}
