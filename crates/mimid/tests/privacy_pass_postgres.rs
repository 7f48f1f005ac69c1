//! Privacy Pass with two `mimid serve` processes for one domain on one
//! PostgreSQL database (a throwaway cluster): both guard
//! `/verification_key` with the provider's own issuer (a key file made by
//! `mimid privacy-pass keygen`); a token spent on one process is refused
//! by the other, and one token sent to both at once is accepted once.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use mimid_client::api::{ProviderApi, SigningKey};
use mimid_store::throwaway::{Sync, ThrowawayCluster};
use mimid_store::{PostgresOptions, PostgresStore, Store};
use mimid_transport::{Clock as _, SystemClock, tls};
use mimid_wire::UserId;
use privacypass::auth::authenticate::parse_www_authenticate_header;
use privacypass::auth::authorize::build_authorization_header;
use privacypass::public_tokens::{PublicKey, TokenRequest, TokenResponse};
use privacypass::{Deserialize as _, Serialize as _};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

const IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 31), Ipv4Addr::new(127, 0, 0, 32)];

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A `mimid serve` process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    ports: [u16; 2],
    url: String,
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
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["a.example".to_string()]).expect("params");
        for ip in IPS {
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(ip)));
        }
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        std::fs::write(dir.path().join("a.pem"), cert.pem()).expect("write");
        std::fs::write(dir.path().join("a.key.pem"), key.serialize_pem()).expect("write");
        for (tool, file) in [("keygen", "a.provider"), ("privacy-pass", "issuer.pem")] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_mimid"));
            if tool == "privacy-pass" {
                command.args(["privacy-pass", "keygen"]);
            } else {
                command.arg("keygen");
            }
            let status = command
                .arg("--out")
                .arg(dir.path().join(file))
                .stdout(Stdio::null())
                .status()
                .expect(tool);
            assert!(status.success(), "{tool}");
        }
        let ports = IPS.map(free_port);
        Setup { dir, ports, url }
    }

    fn config(&self, index: usize) -> PathBuf {
        let dir = self.dir.path().display();
        let config = format!(
            r#"
[provider]
domain = "a.example"
listen = "{ip}:{port}"

[tls]
certificate = "{dir}/a.pem"
key = "{dir}/a.key.pem"
trust_anchors = ["{dir}/ca.pem"]
webpki_roots = false

[federation]
provider_keys = ["{dir}/a.provider"]

[store]
postgres_url = "{url}"
postgres_wait_ms = 500

[privacy_pass]
endpoints = ["/verification_key"]
issuer_key = "{dir}/issuer.pem"
"#,
            ip = IPS[index],
            port = self.ports[index],
            url = self.url,
        );
        let path = self.dir.path().join(format!("mimid-{index}.toml"));
        std::fs::write(&path, config).expect("write config");
        path
    }

    fn start(&self, index: usize) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mimid"))
            .arg("serve")
            .arg("--config")
            .arg(self.config(index))
            .stdout(Stdio::piped())
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
        format!("https://{}:{}", IPS[index], self.ports[index])
    }

    fn http(&self) -> reqwest::Client {
        let anchors = tls::load_certs(&self.dir.path().join("ca.pem")).expect("CA");
        let roots = tls::root_store(&anchors, false).expect("roots");
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config(roots, None).expect("TLS"))
            .build()
            .expect("HTTP client")
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_spent_on_one_process_is_refused_by_the_other() {
    let cluster = ThrowawayCluster::start(Sync::Off).expect("PostgreSQL");
    let setup = Setup::new(cluster.url());
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
