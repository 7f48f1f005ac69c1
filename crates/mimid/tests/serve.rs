//! `mimid serve --config FILE`: a provider started from a configuration
//! file answers discovery and `/verification_key` over TLS 1.3; a bad
//! configuration fails at start naming the setting.

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
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["a.example".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(IP)));
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_mimid"))
        .args(["keygen", "--out"])
        .arg(dir.path().join("provider.key"))
        .status()
        .unwrap();
    assert!(status.success());
    let port = std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(IP), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Files { dir, port }
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
