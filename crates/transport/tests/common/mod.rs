//! A federation on loopback: each provider a real HubService on a SQLite
//! file, a TLS server on its own 127.0.0.x address, and a transport
//! client; certificates from a throwaway CA.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mimid_client::MimiClient;
use mimid_core::{DsEndpoint, Hub, HubConfig, Origin};
use mimid_service::{HubService, ServiceConfig};
use mimid_store::{Durability, SqliteStore, Store};
use mimid_transport::auth::AuthMode;
use mimid_transport::discovery::{DiscoveryConfig, parse_authority};
use mimid_transport::server::{AppState, router};
use mimid_transport::signature::{SignedRequest, encode_header, random_nonce};
use mimid_transport::*;
use mimid_wire::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const ALICE: &str = "mimi://a.example/d/alice/laptop";
pub const BOB: &str = "mimi://b.example/d/bob/phone";

pub fn domain(d: &str) -> ProviderDomain {
    d.parse().unwrap()
}

/// A throwaway certificate authority.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&key).unwrap().der().clone();
        Pki {
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server-and-client certificate for these names and addresses.
    pub fn leaf(
        &self,
        names: &[&str],
        ips: &[IpAddr],
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    pub fn leaf_pem(&self, names: &[&str], ips: &[IpAddr]) -> (String, String) {
        let (chain, key) = self.leaf(names, ips);
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<_> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        (
            pem("CERTIFICATE", chain[0].as_ref()),
            pem("PRIVATE KEY", key.secret_der()),
        )
    }
}

/// How a provider is set up.
#[derive(Clone)]
pub struct Setup {
    pub domain: &'static str,
    pub ip: [u8; 4],
    pub mode: AuthMode,
    /// Keys, the current one first (default: one valid for a year).
    pub keys: Option<Vec<ProviderKey>>,
    /// The server's rate limits (default: `RateLimits::default()`).
    pub rate_limits: Option<mimid_transport::ratelimit::RateLimits>,
    /// The server's connection timeouts and caps (default:
    /// `ConnectionLimits::default()`).
    pub connections: Option<mimid_transport::connections::ConnectionLimits>,
    /// Privacy Pass (default: off).
    pub privacy_pass: Option<mimid_transport::privacy_pass::PrivacyPassSettings>,
}

impl Setup {
    pub fn new(domain: &'static str, ip: [u8; 4], mode: AuthMode) -> Self {
        Setup {
            domain,
            ip,
            mode,
            keys: None,
            rate_limits: None,
            connections: None,
            privacy_pass: None,
        }
    }
}

pub struct Provider {
    pub domain: ProviderDomain,
    pub addr: SocketAddr,
    pub service: Arc<HubService<SqliteStore>>,
    pub client: Arc<TransportClient>,
    pub keys: ProviderKeys,
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

/// Several providers that know each other through discovery overrides.
pub struct Federation {
    pub pki: Pki,
    pub clock: Arc<ManualClock>,
    pub providers: HashMap<String, Provider>,
    pub roots: Arc<rustls::RootCertStore>,
    pub overrides: HashMap<ProviderDomain, Authority>,
}

pub fn now() -> u64 {
    SystemClock.now()
}

impl Federation {
    pub async fn new(setups: &[Setup]) -> Self {
        Federation::with_overrides(setups, &[]).await
    }

    /// `extra` adds overrides (domain -> authority) for providers that
    /// are not started.
    pub async fn with_overrides(setups: &[Setup], extra: &[(&str, &str)]) -> Self {
        let pki = Pki::new("mimid test CA");
        let clock = Arc::new(ManualClock::new(now()));
        let roots = tls::root_store(std::slice::from_ref(&pki.ca), false).unwrap();
        let mut listeners = Vec::new();
        let mut overrides = HashMap::new();
        for s in setups {
            let listener = tokio::net::TcpListener::bind(SocketAddr::from((s.ip, 0)))
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            overrides.insert(
                domain(s.domain),
                parse_authority(&addr.to_string()).unwrap(),
            );
            listeners.push(listener);
        }
        for (d, a) in extra {
            overrides.insert(domain(d), parse_authority(a).unwrap());
        }
        let mut providers = HashMap::new();
        for (s, listener) in setups.iter().zip(listeners) {
            let p = Federation::start(&pki, &clock, &roots, &overrides, setups, s, listener);
            providers.insert(s.domain.to_string(), p);
        }
        Federation {
            pki,
            clock,
            providers,
            roots,
            overrides,
        }
    }

    fn start(
        pki: &Pki,
        clock: &Arc<ManualClock>,
        roots: &Arc<rustls::RootCertStore>,
        overrides: &HashMap<ProviderDomain, Authority>,
        setups: &[Setup],
        s: &Setup,
        listener: tokio::net::TcpListener,
    ) -> Provider {
        let dir = tempfile::tempdir().unwrap();
        let addr = listener.local_addr().unwrap();
        let ds_host = format!("ds.{}", s.domain);
        // Certificates go through PEM files, as in a deployment.
        let (cert_pem, key_pem) = pki.leaf_pem(&[s.domain, &ds_host], &[IpAddr::from(s.ip)]);
        std::fs::write(dir.path().join("cert.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), key_pem).unwrap();
        let chain = tls::load_certs(&dir.path().join("cert.pem")).unwrap();
        let key = tls::load_key(&dir.path().join("key.pem")).unwrap();
        let mut modes = PeerModes {
            default: s.mode,
            peers: HashMap::new(),
        };
        for other in setups {
            modes.peers.insert(domain(other.domain), other.mode);
        }
        let client_cert = Some((chain.clone(), key.clone_key()));
        let keys = ProviderKeys::new(s.keys.clone().unwrap_or_else(|| {
            vec![ProviderKey::generate(now() - 60, now() + 365 * 86_400).unwrap()]
        }))
        .unwrap();
        let mut client_config = ClientConfig::new(
            domain(s.domain),
            keys.clone(),
            tls::client_config(roots.clone(), client_cert).unwrap(),
        );
        client_config.modes = modes.clone();
        client_config.discovery = DiscoveryConfig {
            overrides: overrides.clone(),
            ..DiscoveryConfig::default()
        };
        let client = Arc::new(TransportClient::new(client_config, clock.clone()).unwrap());
        let store = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(SqliteStore::open(
                &dir.path().join("hub.db"),
                Durability::Process,
            ))
        })
        .unwrap();
        let service = Arc::new(HubService::new(
            Hub::new(HubConfig::new(domain(s.domain))),
            store,
            ServiceConfig::default(),
        ));
        let mut config = ServerConfig::new(domain(s.domain), format!("{ds_host}:{}", addr.port()));
        config.auth.modes = modes.clone();
        if let Some(limits) = &s.rate_limits {
            config.rate_limits = limits.clone();
        }
        if let Some(limits) = &s.connections {
            config.connections = limits.clone();
        }
        let connections = config.connections.clone();
        if let Some(settings) = &s.privacy_pass {
            config.privacy_pass =
                mimid_transport::privacy_pass::PrivacyPass::new(settings, &domain(s.domain))
                    .unwrap();
        }
        let state = AppState::new(
            service.clone(),
            keys.clone(),
            config,
            client.clone(),
            clock.clone(),
        );
        let server_tls =
            tls::server_config(chain, key, modes.any_mtls().then(|| roots.clone())).unwrap();
        let server = serve(listener, server_tls, router(state), connections).unwrap();
        Provider {
            domain: domain(s.domain),
            addr: server.local_addr(),
            service,
            client,
            keys,
            server,
            dir,
        }
    }

    pub fn p(&self, d: &str) -> &Provider {
        &self.providers[d]
    }

    /// A raw HTTPS client trusting the test CA, with an optional client
    /// certificate, TLS 1.3.
    pub fn raw_client(
        &self,
        cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config(self.roots.clone(), cert).unwrap())
            .build()
            .unwrap()
    }

    /// A client certificate for `names`, from the federation's CA.
    pub fn cert_for(
        &self,
        names: &[&str],
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.pki.leaf(names, &[])
    }
}

/// The `MIMI-Provider-Signature` value `from` would send to `to`.
pub fn sign(
    key: &ProviderKey,
    from: &str,
    to: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> String {
    let sig = SignedRequest {
        sender: &domain(from),
        recipient: &domain(to),
        method,
        path,
        body,
        timestamp,
        nonce: random_nonce().unwrap(),
    }
    .sign(key)
    .unwrap();
    encode_header(&sig).unwrap()
}

pub fn client(id: &str) -> MimiClient {
    MimiClient::new(id.parse().unwrap()).unwrap()
}

/// A group hosted on a.example by Alice, with Bob (b.example), who joined
/// after fetching `/welcome_information` through b.example's transport
/// client.
pub struct Group {
    pub id: GroupId,
    pub alice: MimiClient,
    pub bob: MimiClient,
}

pub async fn group(f: &Federation) -> Group {
    let a = f.p("a.example");
    // Alice is in her provider's directory: the hub's steps queue her
    // messages (Bob is added to b.example's by the tests that deliver).
    a.service
        .store()
        .add_client(ALICE.into(), "mimi://a.example/u/alice".into(), 0)
        .await
        .unwrap();
    let local = |r: DSRequest| {
        let svc = a.service.clone();
        async move {
            svc.handle(DsEndpoint::GroupOperation, &r, Origin::Local)
                .await
                .unwrap()
        }
    };
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(id)) = local(ask).await else {
        panic!("no group id")
    };
    let mut alice = client(ALICE);
    let mut bob = client(BOB);
    local(alice.create_group(&id, GroupKind::Regular).unwrap()).await;
    let kp = bob.key_package(false, false).unwrap();
    local(alice.add(&id, std::slice::from_ref(&kp), false).unwrap()).await;
    alice.merge_pending_commit(&id).unwrap();
    let jobs = a
        .service
        .store()
        .pending_jobs("b.example", 100)
        .await
        .unwrap();
    let welcome = jobs
        .iter()
        .find_map(|j| {
            let d = DeliverMessage::decode_exact(&j.body, &Limits::default()).unwrap();
            WelcomeMessage::from_bytes(d.message.as_bytes()).ok()
        })
        .expect("a Welcome for Bob");
    let request = bob.welcome_information_request(&id, 1, &kp).unwrap();
    let (status, response) = f
        .p("b.example")
        .client
        .ds_request(
            &domain("a.example"),
            DsEndpoint::WelcomeInformation,
            &request,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{response:?}");
    let DSResponseBody::WelcomeInfo(tree) = response.response_body else {
        panic!("no tree: {response:?}")
    };
    assert_eq!(bob.join(&welcome, &tree).unwrap(), id);
    Group { id, alice, bob }
}

/// What a refused request must leave unchanged on the hub: the group's
/// version, and the messages it stores (for other providers and in its own
/// clients' queues).
pub async fn trace(p: &Provider, group: &GroupId) -> (Option<u64>, u64) {
    let store = p.service.store();
    (
        store.group_version(&group.to_mls_bytes()).await.unwrap(),
        store.message_count().await.unwrap() + store.inbox_count().await.unwrap(),
    )
}

/// Decodes an error answer of a DS endpoint.
pub fn ds_error(body: &[u8]) -> DSError {
    match DSResponse::decode_exact(body, &Limits::default())
        .unwrap()
        .response_body
    {
        DSResponseBody::Error(e) => e,
        other => panic!("not an error: {other:?}"),
    }
}
