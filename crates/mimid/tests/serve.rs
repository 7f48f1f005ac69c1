//! `mimid serve --config FILE`: a provider started from a configuration
//! file answers discovery and `/verification_key` over TLS 1.3; a bad
//! configuration fails at start naming the setting. Operations, on the
//! real process: the operator listener's metrics, health and readiness,
//! JSON logs, environment overrides, SIGHUP reloading the certificate and
//! provider keys under an open connection, and SIGTERM letting a request
//! in flight finish before the process exits 0.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;

use mimid_transport::discovery::DiscoveryConfig;
use mimid_transport::{ClientConfig, ProviderKey, ProviderKeys, SystemClock, TransportClient, tls};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

struct Files {
    dir: tempfile::TempDir,
    port: u16,
    /// The operator listener's port.
    ops_port: u16,
    issuer: Issuer<'static, KeyPair>,
}

/// A free port on `IP`.
fn free_port() -> u16 {
    std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(IP), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new DS certificate (for a.example and `IP`) and key from the test CA,
/// written over `cert.pem` and `key.pem`; returns the certificate (DER).
fn write_certificate(dir: &std::path::Path, issuer: &Issuer<'static, KeyPair>) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["a.example".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(IP)));
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    cert.der().to_vec()
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    write_certificate(dir.path(), &issuer);
    let status = Command::new(env!("CARGO_BIN_EXE_mimid"))
        .args(["keygen", "--out"])
        .arg(dir.path().join("provider.key"))
        .status()
        .unwrap();
    assert!(status.success());
    Files {
        dir,
        port: free_port(),
        ops_port: free_port(),
        issuer,
    }
}

impl Files {
    fn config(&self) -> String {
        format!(
            r#"
[provider]
domain = "a.example"
listen = "{IP}:{port}"
ds_authority = "a.example:{port}"

[tls]
certificate = "{dir}/cert.pem"
key = "{dir}/key.pem"
trust_anchors = ["{dir}/ca.pem"]
webpki_roots = false

[federation]
provider_keys = ["{dir}/provider.key"]

[store]
path = "{dir}/a.db"
"#,
            port = self.port,
            dir = self.dir.path().display()
        )
    }

    fn write(&self, config: &str) -> std::path::PathBuf {
        let path = self.dir.path().join("mimid.toml");
        std::fs::write(&path, config).unwrap();
        path
    }
}

/// Kills the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_configured_provider_serves_discovery_and_its_keys() {
    let f = files();
    let config = f.write(&f.config());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mimid"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("serving a.example on https://"), "{line}");

    // A peer finds it through the well-known path and fetches its keys.
    let anchors = tls::load_certs(&f.dir.path().join("ca.pem")).unwrap();
    let roots = tls::root_store(&anchors, false).unwrap();
    let now = mimid_transport::Clock::now(&SystemClock);
    let keys = ProviderKeys::new(vec![ProviderKey::generate(now, now + 3600).unwrap()]).unwrap();
    let mut client_config = ClientConfig::new(
        "b.example".parse().unwrap(),
        keys,
        tls::client_config(roots, None).unwrap(),
    );
    client_config.discovery = DiscoveryConfig {
        well_known_port: f.port,
        ..DiscoveryConfig::default()
    };
    client_config.resolve = vec![("a.example".into(), SocketAddr::new(IpAddr::V4(IP), f.port))];
    let client = TransportClient::new(client_config, Arc::new(SystemClock)).unwrap();
    let a = "a.example".parse().unwrap();
    let authority = client.discover(&a).await.unwrap();
    assert_eq!(authority.to_string(), format!("a.example:{}", f.port));
    let published = client.fetch_keys(&a).await.unwrap();
    let configured = ProviderKeys::load(&[f.dir.path().join("provider.key")]).unwrap();
    assert_eq!(
        published.keys,
        vec![configured.current().verification_key().clone()]
    );
}

#[test]
fn a_bad_configuration_fails_at_start_naming_the_setting() {
    let f = files();
    let cases = [
        (
            f.config().replace("\"a.example\"", "\"A example\""),
            "provider.domain",
        ),
        (f.config().replace("key.pem", "nokey.pem"), "tls.key"),
        (
            f.config()
                .replace("provider_keys = [", "provider_keys_typo = ["),
            "provider_keys_typo",
        ),
    ];
    for (config, setting) in cases {
        let path = f.write(&config);
        let output = Command::new(env!("CARGO_BIN_EXE_mimid"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{setting}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(setting), "{setting}: {stderr}");
    }
}

#[test]
fn a_bad_environment_override_fails_at_start_naming_the_variable() {
    let f = files();
    let path = f.write(&f.config());
    for ((name, value), expected) in [
        (
            ("MIMID_DELIVERY_LANES", "0"),
            "delivery.lanes (from MIMID_DELIVERY_LANES)",
        ),
        (
            ("MIMID_STORE_DURABILITY", "sometimes"),
            "MIMID_STORE_DURABILITY",
        ),
        (("MIMID_NO_SUCH", "1"), "MIMID_NO_SUCH: no such setting"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_mimid"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env(name, value)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

/// Runs `mimid user ARGS` on the configuration; its status and output.
fn user(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mimid"))
        .arg("user")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn users_are_added_listed_and_removed_on_the_store() {
    let files = files();
    let config = files.write(&files.config());
    let (ok, out) = user(&config, &["add", "alice"]);
    assert!(ok, "{out}");
    assert!(out.contains("added mimi://a.example/u/alice"), "{out}");
    let (ok, out) = user(&config, &["add", "mimi://a.example/u/bob"]);
    assert!(ok, "{out}");
    // Twice, or of another provider, or no name: refused, saying why.
    let (ok, out) = user(&config, &["add", "alice"]);
    assert!(!ok && out.contains("exists already"), "{out}");
    let (ok, out) = user(&config, &["add", "mimi://b.example/u/carol"]);
    assert!(!ok && out.contains("not a user of this provider"), "{out}");
    let (ok, out) = user(&config, &["add", "Not A Name"]);
    assert!(!ok && out.contains("no user name or UserID"), "{out}");
    let (ok, out) = user(&config, &["list"]);
    assert!(ok, "{out}");
    let listed: Vec<&str> = out.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(
        listed,
        ["mimi://a.example/u/alice", "mimi://a.example/u/bob"],
        "{out}"
    );
    let (ok, out) = user(&config, &["remove", "alice"]);
    assert!(
        ok && out.contains("removed mimi://a.example/u/alice"),
        "{out}"
    );
    let (ok, out) = user(&config, &["remove", "alice"]);
    assert!(!ok && out.contains("no user"), "{out}");
    let (_, out) = user(&config, &["list"]);
    assert!(!out.contains("alice") && out.contains("u/bob"), "{out}");
}

/// [`Files::config`] with the operator listener on, and c.example (whose
/// DS refuses connections) configured as a peer.
impl Files {
    fn ops_config(&self) -> String {
        format!(
            "{}\n[ops]\nlisten = \"{IP}:{}\"\nshutdown_grace_seconds = 10\n\n\
             [federation.peers.\"c.example\"]\nds_authority = \"{IP}:1\"\n",
            self.config(),
            self.ops_port
        )
    }

    fn ops_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(IP), self.ops_port)
    }

    fn ds_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(IP), self.port)
    }

    /// The stored outbox, with `mimid` stopped: a job to c.example (a real
    /// DeliverMessage, committed 100 s ago) and one to d.example whose
    /// stored message is no DeliverMessage.
    async fn seed_outbox(&self) {
        let store = mimid_store::SqliteStore::open(
            &self.dir.path().join("a.db"),
            mimid_store::Durability::Process,
        )
        .await
        .unwrap();
        let vectors: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../wire/vectors/golden.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let deliver = vectors
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["struct"] == "DeliverMessage")
            .unwrap();
        let body = hex::decode(deliver["hex"].as_str().unwrap()).unwrap();
        use mimid_store::{GroupWrite, NewJob, NewMessage, Step, Store as _};
        let now = mimid_transport::Clock::now(&SystemClock);
        let step = |expected_version, write, now| Step {
            group_id: b"seeded".to_vec(),
            expected_version,
            write,
            snapshot: None,
            prune_snapshots_before: None,
            messages: Vec::new(),
            jobs: Vec::new(),
            local: Vec::new(),
            remember: None,
            forget_digests: None,
            now,
        };
        let put = GroupWrite::Put {
            state: b"state".to_vec(),
            reserved_until: None,
        };
        store.commit(step(None, put, now)).await.unwrap();
        let mut mail = step(Some(1), GroupWrite::Keep, now - 100);
        mail.messages = vec![
            NewMessage {
                message_id: [1; 16],
                body,
            },
            NewMessage {
                message_id: [2; 16],
                body: b"no DeliverMessage".to_vec(),
            },
        ];
        mail.jobs = vec![
            NewJob {
                destination: "c.example".into(),
                message_id: [1; 16],
                recipients: b"mimi://c.example/d/carol/tablet".to_vec(),
            },
            NewJob {
                destination: "d.example".into(),
                message_id: [2; 16],
                recipients: b"mimi://d.example/d/dave/desk".to_vec(),
            },
        ];
        store.commit(mail).await.unwrap();
        store.close().await.unwrap();
    }

    /// Starts `mimid serve` on `config` with `args`, its log in
    /// `mimid.log`; returns once it serves.
    fn start(&self, config: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let path = self.write(config);
        let log = std::fs::File::create(self.dir.path().join("mimid.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mimid"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let server = Server(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(
            line.starts_with("serving a.example on https://"),
            "{line}\n{}",
            self.log()
        );
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mimid.log")).unwrap_or_default()
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let anchors = tls::load_certs(&self.dir.path().join("ca.pem")).unwrap();
        tls::root_store(&anchors, false).unwrap()
    }

    /// An HTTPS client for the DS (a.example resolved to it).
    fn https(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config(self.roots(), None).unwrap())
            .resolve("a.example", self.ds_addr())
            .build()
            .unwrap()
    }

    /// A TLS connection to the DS, speaking HTTP/1.1.
    async fn connect(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut config = tls::client_config(self.roots(), None).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(self.ds_addr())
            .await
            .unwrap();
        connector
            .connect("a.example".try_into().unwrap(), tcp)
            .await
            .unwrap()
    }
}

/// The leaf certificate a TLS connection was made with.
fn leaf(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Reads one HTTP/1.1 answer (with a Content-Length) from `stream`: its
/// status and body.
async fn read_answer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u16, Vec<u8>) {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !buffer.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "the connection closed mid-answer: {buffer:?}");
        buffer.push(byte[0]);
    }
    let head = String::from_utf8(buffer).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    (status, body)
}

/// GET over plain HTTP/1.0 (the operator listener): status and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: ops\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `name` whose labels are exactly `labels`.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        let mut found: Vec<(&str, &str)> = rest
            .split(',')
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        let mut wanted = labels.to_vec();
        found.sort();
        wanted.sort();
        (found == wanted).then(|| value.parse().ok())?
    })
}

/// Scrapes until `check` holds (up to 10 s); the last scrape.
fn scrape_until(f: &Files, what: &str, check: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        let (status, metrics) = http_get(f.ops_addr(), "/metrics");
        assert_eq!(status, 200, "{metrics}");
        if check(&metrics) {
            return metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what}: {}", http_get(f.ops_addr(), "/metrics").1);
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(server.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_listener_serves_metrics_health_and_readiness() {
    let f = files();
    f.seed_outbox().await;
    // The operator listener's address comes from the environment.
    let config = f.ops_config().replace(
        &format!("listen = \"{IP}:{}\"", f.ops_port),
        "listen = \"127.0.0.1:1\"",
    );
    let ops = f.ops_addr().to_string();
    let server = f.start(
        &config,
        &["--log-format", "json"],
        &[("MIMID_OPS_LISTEN", &ops)],
    );
    assert_eq!(http_get(f.ops_addr(), "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(f.ops_addr(), "/readyz"), (200, "ready\n".into()));

    let https = f.https();
    let base = format!("https://a.example:{}", f.port);
    let get = |path: &str| https.get(format!("{base}{path}")).send();
    assert_eq!(
        get("/.well-known/mimi/ds-domain").await.unwrap().status(),
        200
    );
    assert_eq!(get("/verification_key").await.unwrap().status(), 200);
    assert_eq!(get("/verification_key").await.unwrap().status(), 200);
    assert_eq!(get("/no/such/path").await.unwrap().status(), 404);
    let post = |content_type: &'static str| {
        https
            .post(format!("{base}/group_operation"))
            .header("content-type", content_type)
            .body(vec![0u8; 8])
            .send()
    };
    // Unsigned: provider authentication fails; then the wrong type.
    assert_eq!(
        post("application/octet-stream").await.unwrap().status(),
        401
    );
    assert_eq!(post("text/plain").await.unwrap().status(), 415);

    // The outbox: c.example's job is retried (its DS refuses
    // connections), d.example's is a dead letter at its first attempt.
    let metrics = scrape_until(&f, "outbox", |m| {
        sample(
            m,
            "mimid_outbox_attempts_total",
            &[("destination", "c.example"), ("outcome", "retry")],
        )
        .is_some()
            && sample(m, "mimid_outbox_dead_letters", &[]) == Some(1.0)
    });
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&metrics, name, labels).unwrap_or_else(|| panic!("{name} {labels:?}:\n{metrics}"))
    };
    let requests = "mimid_requests_total";
    assert_eq!(
        value(
            requests,
            &[
                ("endpoint", "/.well-known/mimi/ds-domain"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("endpoint", "/verification_key"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        value(requests, &[("endpoint", "other"), ("status", "404")]),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("endpoint", "/group_operation"), ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("endpoint", "/group_operation"), ("status", "415")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "mimid_request_duration_seconds_count",
            &[("endpoint", "/verification_key")]
        ),
        2.0
    );
    assert!(
        metrics.contains(
            "mimid_request_duration_seconds_bucket{endpoint=\"/verification_key\",le=\"0.005\"}"
        ),
        "{metrics}"
    );
    let rejected = "mimid_rejected_requests_total";
    assert_eq!(value(rejected, &[("reason", "authentication")]), 1.0);
    assert_eq!(
        value(rejected, &[("reason", "unsupported_media_type")]),
        1.0
    );
    assert_eq!(value(rejected, &[("reason", "not_found")]), 1.0);
    assert_eq!(
        value("mimid_outbox_jobs", &[("destination", "c.example")]),
        1.0
    );
    assert!(
        value(
            "mimid_outbox_oldest_job_age_seconds",
            &[("destination", "c.example")]
        ) >= 100.0
    );
    assert_eq!(
        value(
            "mimid_outbox_dead_lettered_total",
            &[("destination", "d.example")]
        ),
        1.0
    );
    assert!(
        value(
            "mimid_store_transaction_seconds_count",
            &[("backend", "sqlite")]
        ) >= 1.0
    );
    assert_eq!(value("mimid_store_up", &[]), 1.0);
    let now = mimid_transport::Clock::now(&SystemClock) as f64;
    assert!(value("mimid_certificate_expiry_timestamp_seconds", &[]) > now);
    assert!(value("mimid_provider_key_expiry_timestamp_seconds", &[]) > now);

    // JSON logs: one object per line; a request's carry its id.
    let log = f.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["endpoint"] == "/verification_key"
                && l["span"]["id"].as_str().is_some_and(|id| id.len() == 36)
                && l["status"] == 200),
        "{log}"
    );
    drop(server);
}

/// SQLite's WAL locks (bytes 120 to 127 of the `-shm` file) held by this
/// process, as a stuck process sharing the database would hold them: no
/// connection of another process can begin a read until it is dropped.
struct WalLock {
    /// Closing it releases the locks.
    _shm: std::fs::File,
}

impl WalLock {
    fn take(database: &std::path::Path) -> WalLock {
        use std::os::fd::AsRawFd as _;
        let mut shm = database.as_os_str().to_owned();
        shm.push("-shm");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(shm)
            .unwrap();
        // SAFETY: a plain `flock` struct, zeroed, then filled in.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = 120;
        lock.l_len = 8;
        // SAFETY: `fcntl(F_SETLKW)` on an open descriptor with a valid
        // `flock`; waits while a reader holds its mark.
        let locked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &lock) };
        assert_eq!(locked, 0, "{}", std::io::Error::last_os_error());
        WalLock { _shm: file }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_store_cannot_be_read() {
    let f = files();
    let _server = f.start(&f.ops_config(), &[], &[]);
    assert_eq!(http_get(f.ops_addr(), "/readyz"), (200, "ready\n".into()));
    let lock = WalLock::take(&f.dir.path().join("a.db"));
    let (status, body) = http_get(f.ops_addr(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: "), "{body}");
    // Alive all the same.
    assert_eq!(http_get(f.ops_addr(), "/healthz"), (200, "ok\n".into()));
    drop(lock);
    let mut status = 0;
    for _ in 0..100 {
        status = http_get(f.ops_addr(), "/readyz").0;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status, 200, "{}", f.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keys_and_keeps_connections() {
    use tokio::io::AsyncWriteExt as _;
    let f = files();
    let server = f.start(&f.ops_config(), &[], &[]);
    let mut old = f.connect().await;
    let first = leaf(&old);
    let request = b"GET /.well-known/mimi/ds-domain HTTP/1.1\r\nHost: a.example\r\n\r\n";
    old.write_all(request).await.unwrap();
    assert_eq!(read_answer(&mut old).await.0, 200);

    // A new certificate and a new provider key, then SIGHUP.
    let second = write_certificate(f.dir.path(), &f.issuer);
    let key_path = f.dir.path().join("provider.key");
    std::fs::remove_file(&key_path).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_mimid"))
        .args(["keygen", "--out"])
        .arg(&key_path)
        .status()
        .unwrap();
    assert!(status.success());
    let new_key = ProviderKeys::load(&[&key_path]).unwrap();
    signal(&server, "HUP");
    scrape_until(&f, "reloaded", |m| {
        sample(
            m,
            "mimid_reloads_total",
            &[("what", "certificate"), ("outcome", "ok")],
        ) == Some(1.0)
            && sample(
                m,
                "mimid_reloads_total",
                &[("what", "provider_keys"), ("outcome", "ok")],
            ) == Some(1.0)
    });
    // New connections get the new certificate; the open one still works.
    assert_ne!(first, second);
    assert_eq!(leaf(&f.connect().await), second);
    old.write_all(request).await.unwrap();
    assert_eq!(read_answer(&mut old).await.0, 200);
    assert_eq!(leaf(&old), first);
    // The new key is published.
    let (status, body) = {
        let response = f
            .https()
            .get(format!("https://a.example:{}/verification_key", f.port))
            .send()
            .await
            .unwrap();
        (response.status(), response.bytes().await.unwrap())
    };
    assert_eq!(status, 200);
    let published = <mimid_wire::VerificationKeyResponse as mimid_wire::Wire>::decode_exact(
        &body,
        &mimid_wire::Limits::default(),
    )
    .unwrap();
    let mimid_wire::VerificationKeyResult::Ok(ok) = published.result else {
        panic!("{published:?}");
    };
    assert_eq!(ok.keys, vec![new_key.current().verification_key().clone()]);

    // A bad certificate file: the reload fails, the one in force stays.
    std::fs::write(f.dir.path().join("cert.pem"), "not a certificate").unwrap();
    signal(&server, "HUP");
    scrape_until(&f, "failed reload", |m| {
        sample(
            m,
            "mimid_reloads_total",
            &[("what", "certificate"), ("outcome", "failed")],
        ) == Some(1.0)
    });
    assert_eq!(leaf(&f.connect().await), second);
    assert!(f.log().contains("reload failed"), "{}", f.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish_then_exits_0() {
    use tokio::io::AsyncWriteExt as _;
    let f = files();
    let mut server = f.start(&f.ops_config(), &[], &[]);
    // A request whose body is half sent when SIGTERM comes.
    let mut tls = f.connect().await;
    tls.write_all(
        b"POST /group_operation HTTP/1.1\r\nHost: a.example\r\n\
          Content-Type: application/octet-stream\r\nContent-Length: 16\r\n\r\n12345678",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    signal(&server, "TERM");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Draining: still running, not ready, accepting no new connections.
    assert!(server.0.try_wait().unwrap().is_none(), "{}", f.log());
    assert_eq!(
        http_get(f.ops_addr(), "/readyz"),
        (503, "not ready: stopping\n".into()),
        "{}",
        f.log()
    );
    assert!(tokio::net::TcpStream::connect(f.ds_addr()).await.is_err());
    // The rest of the body: the request is answered (unsigned: 401).
    tls.write_all(b"abcdefgh").await.unwrap();
    assert_eq!(read_answer(&mut tls).await.0, 401);
    // Then the process ends, with 0.
    let mut status = None;
    for _ in 0..100 {
        status = server.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let status = status.expect("mimid exits");
    assert_eq!(status.code(), Some(0), "{}", f.log());
    assert!(
        f.log()
            .contains("every request and delivery in flight finished"),
        "{}",
        f.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_log_names_the_authenticated_peer() {
    use mimid_transport::node::{Node, NodeSettings};
    let f = files();
    // b.example: a whole provider in this process, its certificate from
    // the same CA, a.example's DS configured.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["b.example".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(IP)));
    let cert = params.signed_by(&key, &f.issuer).unwrap();
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(IP), 0))
        .await
        .unwrap();
    let b_port = listener.local_addr().unwrap().port();
    let now = mimid_transport::Clock::now(&SystemClock);
    let b_domain: mimid_wire::ProviderDomain = "b.example".parse().unwrap();
    let b = Node::start(NodeSettings {
        domain: b_domain.clone(),
        listener,
        ds_authority: format!("{IP}:{b_port}"),
        store_path: f.dir.path().join("b.db"),
        durability: mimid_store::Durability::Process,
        chain: vec![cert.der().clone()],
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        roots: f.roots(),
        keys: ProviderKeys::new(vec![ProviderKey::generate(now - 60, now + 3600).unwrap()])
            .unwrap(),
        modes: mimid_transport::PeerModes::default(),
        overrides: std::collections::HashMap::from([(
            "a.example".parse().unwrap(),
            mimid_transport::discovery::parse_authority(&f.ds_addr().to_string()).unwrap(),
        )]),
        resolve: Vec::new(),
        well_known_port: 443,
        body_limit: mimid_wire::DEFAULT_BODY_LIMIT,
        limits: mimid_wire::Limits::default(),
        outbox: mimid_service::outbox::OutboxConfig::new(b_domain),
        rate_limits: mimid_transport::ratelimit::RateLimits::default(),
        connections: mimid_transport::connections::ConnectionLimits::default(),
        privacy_pass: None,
        clock: Arc::new(SystemClock),
    })
    .await
    .unwrap();
    let config = format!(
        "{}\n[federation.peers.\"b.example\"]\nds_authority = \"{IP}:{b_port}\"\n",
        f.config()
    );
    let _a = f.start(&config, &["--log-format", "json"], &[]);
    // Signed by b.example (a fetches its key), then not a DSRequest: 400.
    let reply = b
        .client
        .post(
            &"a.example".parse().unwrap(),
            "/group_operation",
            b"not a DSRequest".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 400);
    let log = f.log();
    assert!(
        log.lines().any(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            line["span"]["endpoint"] == "/group_operation"
                && line["span"]["peer"] == "b.example"
                && line["status"] == 400
        }),
        "{log}"
    );
    // Nothing of the body.
    assert!(!log.contains("not a DSRequest"), "{log}");
}
