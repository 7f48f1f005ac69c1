//! The HTTPS load benchmark of issue 9 (`docs/performance.md`, "Federation
//! over HTTPS"): three providers as whole [`Node`]s on loopback (a.example,
//! the hub, on 127.0.0.2; b.example on .3; c.example on .4), certificates
//! from a throwaway rcgen CA, provider keys, discovery through their real
//! well-known endpoints; a group hosted on a.example with members on all
//! three, built through the hub's own API by real OpenMLS clients.
//!
//! ```text
//! cargo build --release -p mimid-bench --example https_load
//! ./target/release/examples/https_load [requests] [connections] [options]
//!     --members N    group size (100)
//!     --senders N    b.example members that send (8)
//!     --commits N    commits that add the members (3)
//!     --size N       plaintext bytes per message (1024)
//!     --modes LIST   signature,mtls (both, in this order)
//!     --wait S       longest wait for the outbox after the last answer (10)
//!     --groups N     groups of that size, each with its own members, the
//!                    requests spread over them in turn (1)
//!     --lanes N      groups each outbox sends side by side per
//!                    destination (the default of `OutboxConfig`, 8)
//! ./target/release/examples/https_load groups [groups] [concurrency]
//! ```
//!
//! Load mode. For each provider authentication mode, `requests` real
//! `ds_send_message` requests of b.example's members (pre-generated, each
//! a distinct MLS message) are POSTed to a.example's `/group_operation` by
//! `connections` workers, as b.example relays them: each worker owns one
//! TLS 1.3 connection speaking HTTP/1.1 with keep-alive (ALPN
//! `http/1.1` only, hyper's client connection, one request in flight per
//! connection), and signs each request with b.example's provider key
//! (`MIMI-Provider-Signature`, the transport's own signing code) or, in
//! mTLS mode, presents b.example's client certificate and `MIMI-Sender`.
//! The hub validates, enqueues durably (`Durability::Process`), answers,
//! and its outbox delivers to b.example and c.example over HTTPS; a probe
//! polls one c.example client's queue and times each message from the
//! moment its request was sent to the moment it is queued there.
//!
//! Before each mimid run, the same workers drive a bare endpoint (axum 0.8
//! over tokio-rustls and hyper-util, the same rustls TLS 1.3 configuration,
//! no auth, no store) that reads a body of the request's size and answers
//! with a body of the response's size. The load generator does the same
//! work for both (in signature mode it signs every request for the bare
//! endpoint too, which ignores the header), so the ratio compares servers.
//! Between the two, the same workers send the real requests to the
//! authenticated floor: the bare endpoint plus what no DS of the seed can
//! skip, by mimid's own code (the provider authenticated by the transport's
//! `Authenticator`, the body decoded, the client signature checked, both
//! signatures in batches), and nothing else. mimid / floor is what the
//! DS's own work (group state, durable storage, fan-out and the deliveries
//! made meanwhile) leaves of the rate authentication allows.
//!
//! The servers run on one tokio runtime (threads `srv`, 2 workers), the
//! load generator on another (threads `gen`, 2 workers); CPU time is read
//! per thread from /proc/self/task, so the report splits it between the
//! generator and the servers' threads.
//!
//! Groups mode. Creates `groups` groups of three (creator on a.example,
//! one member each on b.example and c.example, fresh clients each time)
//! through a.example's API (`Node::submit`), `concurrency` at a time, and
//! reports the process's peak resident memory (`VmHWM`) as it goes. The
//! three providers and the clients creating the groups run in this same
//! process: the figure is an upper bound for the hub.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use mimid_bench::{cpu_seconds, memory_kib};
use mimid_client::MimiClient;
use mimid_core::{DsEndpoint, HubGroup, SignatureCheck, SignerKey};
use mimid_service::BatchVerifier;
use mimid_service::outbox::OutboxConfig;
use mimid_store::{Durability, Store};
use mimid_transport::auth::{AuthConfig, AuthMode, Authenticator, PeerCertificates, PeerModes};
use mimid_transport::connections::ConnectionLimits;
use mimid_transport::discovery::Authority;
use mimid_transport::node::{Node, NodeSettings};
use mimid_transport::ratelimit::{Rate, RateLimits};
use mimid_transport::signature::{
    PROVIDER_SIGNATURE_HEADER, SENDER_HEADER, SignedRequest, encode_header, random_nonce,
};
use mimid_transport::{Clock, ProviderKey, ProviderKeys, SystemClock, tls};
use mimid_wire::{
    ClientId, DSAuthData, DSRequest, DSRequestBody, DSResponse, DSResponseBody, DeliverableMessage,
    GroupId, GroupIdField, GroupKind, Limits, ProviderDomain, WelcomeMessage, Wire,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.example"];
const HUB: usize = 0;
const RELAY: usize = 1;
const PROBE: usize = 2;
const PATH: &str = "/group_operation";

/// Requests each worker sends before the clock starts (the hub fetches
/// b.example's key on the first one; connections warm up).
const WARMUP_PER_CONNECTION: usize = 2;

/// Messages sent one at a time before the load, to time the way to
/// c.example without load.
const QUIET: usize = 20;

/// The bare endpoint gets this many times `requests`.
const BARE_FACTOR: usize = 4;

/// The authenticated floor gets this many times `requests`.
const FLOOR_FACTOR: usize = 2;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("srv")
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("groups") {
        let groups = args
            .get(1)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(10_000);
        let concurrency = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(8);
        return server_rt.block_on(groups_mode(groups, concurrency));
    }
    let opts = Options::parse(&args)?;
    let gen_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gen")
        .enable_all()
        .build()?;
    load_mode(&opts, &server_rt, &gen_rt)
}

struct Options {
    requests: usize,
    connections: usize,
    members: usize,
    senders: usize,
    commits: usize,
    size: usize,
    modes: Vec<AuthMode>,
    /// Longest wait for the outbox after the last answer, in seconds.
    wait: u64,
    /// Groups (of `members` each, with their own clients).
    groups: usize,
    /// The outboxes' lanes per destination.
    lanes: usize,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut o = Options {
            requests: 20_000,
            connections: 64,
            members: 100,
            senders: 8,
            commits: 3,
            size: 1024,
            modes: vec![AuthMode::Signature, AuthMode::Mtls],
            wait: 10,
            groups: 1,
            lanes: OutboxConfig::new("a.example".parse()?).lanes,
        };
        let mut positional = 0;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or_else(|| anyhow!("{a} needs a value"));
            match a.as_str() {
                "--members" => o.members = value()?.parse()?,
                "--senders" => o.senders = value()?.parse()?,
                "--commits" => o.commits = value()?.parse()?,
                "--size" => o.size = value()?.parse()?,
                "--wait" => o.wait = value()?.parse()?,
                "--groups" => o.groups = value()?.parse()?,
                "--lanes" => o.lanes = value()?.parse()?,
                "--modes" => {
                    o.modes = value()?
                        .split(',')
                        .map(|m| match m {
                            "signature" => Ok(AuthMode::Signature),
                            "mtls" => Ok(AuthMode::Mtls),
                            "both" => Ok(AuthMode::Both),
                            _ => Err(anyhow!("unknown mode {m}")),
                        })
                        .collect::<Result<_, _>>()?
                }
                _ if positional == 0 => {
                    o.requests = a.parse()?;
                    positional += 1;
                }
                _ if positional == 1 => {
                    o.connections = a.parse()?;
                    positional += 1;
                }
                _ => bail!("unexpected argument {a}"),
            }
        }
        ensure!(o.members >= 3 * o.senders.max(1), "too few members");
        ensure!(o.connections > 0 && o.senders > 0 && o.commits > 0 && o.groups > 0);
        Ok(o)
    }
}

// ---------------------------------------------------------------------------
// The federation.

/// A throwaway certificate authority.
struct Pki {
    roots: Arc<rustls::RootCertStore>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

type Leaf = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

impl Pki {
    fn new() -> anyhow::Result<Pki> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "https_load CA");
        let ca = params.self_signed(&key)?;
        let roots = tls::root_store(&[ca.der().clone()], false)?;
        Ok(Pki {
            roots,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// A server-and-client certificate for `names` and `ip`.
    fn leaf(&self, names: &[String], ip: IpAddr) -> anyhow::Result<Leaf> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }
}

fn ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))
}

fn now_secs() -> u64 {
    SystemClock.now()
}

/// Three providers on loopback, found through their well-known paths.
struct Federation {
    mode: AuthMode,
    port: u16,
    pki: Pki,
    nodes: Vec<Node>,
    leaves: Vec<Leaf>,
    keys: Vec<ProviderKeys>,
    _dir: tempfile::TempDir,
}

impl Federation {
    /// The three providers; each outbox sends up to `lanes` groups side by
    /// side per destination.
    async fn start(mode: AuthMode, lanes: usize) -> anyhow::Result<Federation> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::new()?;
        let (port, listeners) = bind_three().await?;
        let mut resolve = Vec::new();
        for (i, d) in DOMAINS.iter().enumerate() {
            let addr = SocketAddr::new(ip(i), port);
            resolve.push((d.to_string(), addr));
            resolve.push((format!("ds.{d}"), addr));
        }
        let (mut nodes, mut leaves, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for (i, listener) in listeners.into_iter().enumerate() {
            let domain: ProviderDomain = DOMAINS[i].parse()?;
            let leaf = pki.leaf(&[DOMAINS[i].into(), format!("ds.{}", DOMAINS[i])], ip(i))?;
            let now = now_secs();
            let key = ProviderKey::generate(now - 60, now + 365 * 86_400)
                .map_err(|e| anyhow!("provider key: {e}"))?;
            let provider_keys = ProviderKeys::new(vec![key])?;
            let mut outbox = OutboxConfig::new(domain.clone());
            outbox.backoff_start = Duration::from_millis(100);
            outbox.backoff_max = Duration::from_secs(1);
            outbox.rescan = Duration::from_millis(500);
            outbox.lanes = lanes;
            let node = Node::start(NodeSettings {
                domain: domain.clone(),
                listener,
                ds_authority: format!("ds.{domain}:{port}"),
                store_path: dir.path().join(format!("{domain}.db")),
                durability: Durability::Process,
                chain: leaf.0.clone(),
                key: leaf.1.clone_key(),
                roots: pki.roots.clone(),
                keys: provider_keys.clone(),
                modes: PeerModes {
                    default: mode,
                    peers: HashMap::new(),
                },
                overrides: HashMap::<ProviderDomain, Authority>::new(),
                resolve: resolve.clone(),
                well_known_port: port,
                body_limit: mimid_wire::DEFAULT_BODY_LIMIT,
                limits: Limits::default(),
                outbox,
                // Checked on every request, never reached by this load.
                rate_limits: RateLimits {
                    per_ip: Some(Rate {
                        per_second: 10_000_000,
                        burst: 10_000_000,
                    }),
                    per_provider: Some(Rate {
                        per_second: 10_000_000,
                        burst: 10_000_000,
                    }),
                    per_group: Some(Rate {
                        per_second: 10_000_000,
                        burst: 10_000_000,
                    }),
                    per_member: Some(Rate {
                        per_second: 10_000_000,
                        burst: 10_000_000,
                    }),
                    per_target_user: Some(Rate {
                        per_second: 10_000_000,
                        burst: 10_000_000,
                    }),
                    max_keys: 100_000,
                },
                // Checked on every connection and request, never reached.
                connections: ConnectionLimits {
                    max_connections: 100_000,
                    max_connections_per_ip: 100_000,
                    in_flight_per_ip: 100_000,
                    in_flight_per_provider: 100_000,
                    ..ConnectionLimits::default()
                },
                privacy_pass: None,
                clock: Arc::new(SystemClock),
            })
            .await?;
            nodes.push(node);
            leaves.push(leaf);
            keys.push(provider_keys);
        }
        Ok(Federation {
            mode,
            port,
            pki,
            nodes,
            leaves,
            keys,
            _dir: dir,
        })
    }

    fn node_of(&self, client: &ClientId) -> anyhow::Result<&Node> {
        let domain = client.domain();
        let d = domain.as_str();
        let i = DOMAINS
            .iter()
            .position(|x| *x == d)
            .ok_or_else(|| anyhow!("no provider {d}"))?;
        Ok(&self.nodes[i])
    }

    /// A client's request through its own provider.
    async fn submit(
        &self,
        who: &ClientId,
        endpoint: DsEndpoint,
        request: &DSRequest,
    ) -> anyhow::Result<DSResponseBody> {
        self.node_of(who)?
            .submit(endpoint, request)
            .await
            .map_err(|e| anyhow!("{who}'s request was refused: {e}"))
    }

    /// A new client, in its provider's directory.
    async fn client(&self, id: &str) -> anyhow::Result<MimiClient> {
        let id: ClientId = id.parse()?;
        self.node_of(&id)?
            .service
            .store()
            .add_client(id.to_string(), id.user().to_string(), now_secs())
            .await?;
        MimiClient::new(id).map_err(|e| anyhow!("{e}"))
    }

    /// Waits until the hub's outbox has nothing left for b.example and
    /// c.example; returns how long that took.
    async fn drain(&self, limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let store = self.nodes[HUB].service.store();
        loop {
            let mut empty = true;
            for d in &DOMAINS[1..] {
                empty &= store.pending_jobs(d, 1).await?.is_empty();
            }
            if empty {
                return Ok(start.elapsed());
            }
            ensure!(
                start.elapsed() < limit,
                "the outbox still has jobs after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn request_group(&self, creator: &ClientId) -> anyhow::Result<GroupId> {
        let ask = DSRequest {
            version: 1,
            request_body: DSRequestBody::RequestGroupId,
            authentication_data: DSAuthData::Anonymous,
        };
        match self
            .submit(creator, DsEndpoint::GroupOperation, &ask)
            .await?
        {
            DSResponseBody::GroupId(GroupIdField(group)) => Ok(group),
            other => bail!("no group id: {other:?}"),
        }
    }
}

/// Three listeners on one port of 127.0.0.2, .3 and .4 (discovery asks
/// each domain's well-known path on the same port).
async fn bind_three() -> anyhow::Result<(u16, Vec<tokio::net::TcpListener>)> {
    for _ in 0..20 {
        let first = tokio::net::TcpListener::bind(SocketAddr::new(ip(0), 0)).await?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for i in 1..3 {
            match tokio::net::TcpListener::bind(SocketAddr::new(ip(i), port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == 3 {
            return Ok((port, listeners));
        }
    }
    bail!("no port free on 127.0.0.2, .3 and .4")
}

// ---------------------------------------------------------------------------
// The group and the requests.

/// The group on a.example, its senders (members on b.example that joined),
/// and a member on c.example whose queue the probe watches.
struct Conversation {
    group: GroupId,
    senders: Vec<MimiClient>,
    probe: String,
}

/// Group `k` (0-based): its clients are users `u{i}` (group 0) or
/// `g{k}u{i}`, device `dev`.
async fn build_group(fed: &Federation, o: &Options, k: usize) -> anyhow::Result<Conversation> {
    let started = Instant::now();
    let user = |i: usize| {
        if k == 0 {
            format!("u{i}")
        } else {
            format!("g{k}u{i}")
        }
    };
    let creator_id: ClientId = format!("mimi://a.example/d/{}/dev", user(0)).parse()?;
    let mut creator = fed.client(creator_id.as_str()).await?;
    let group = fed.request_group(&creator_id).await?;
    let create = creator
        .create_group(&group, GroupKind::Regular)
        .map_err(|e| anyhow!("{e}"))?;
    fed.submit(&creator_id, DsEndpoint::GroupOperation, &create)
        .await?;

    let mut senders = Vec::new(); // (client, key package, epoch added in)
    let mut probe = None;
    let others: Vec<usize> = (1..o.members).collect();
    let per_commit = others.len().div_ceil(o.commits);
    for batch in others.chunks(per_commit) {
        let mut kps = Vec::new();
        let mut joining = Vec::new();
        for &i in batch {
            let id = format!("mimi://{}/d/{}/dev", DOMAINS[i % 3], user(i));
            let client = fed.client(&id).await?;
            let kp = client
                .key_package(false, false)
                .map_err(|e| anyhow!("{e}"))?;
            if i % 3 == RELAY && senders.len() + joining.len() < o.senders {
                joining.push((client, kp.clone()));
            } else if i % 3 == PROBE && probe.is_none() {
                probe = Some(id);
            }
            kps.push(kp);
        }
        let add = creator
            .add(&group, &kps, false)
            .map_err(|e| anyhow!("{e}"))?;
        fed.submit(&creator_id, DsEndpoint::GroupOperation, &add)
            .await?;
        creator
            .merge_pending_commit(&group)
            .map_err(|e| anyhow!("{e}"))?;
        let epoch = creator.epoch_and_tree_hash(&group).map_or(0, |e| e.0);
        senders.extend(joining.into_iter().map(|(c, kp)| (c, kp, epoch)));
    }
    ensure!(senders.len() == o.senders, "too few b.example members");
    fed.drain(Duration::from_secs(60)).await?;

    // The senders join: the Welcome, the tree of their epoch through
    // b.example, then any commit after theirs.
    let b = &fed.nodes[RELAY];
    let hub_epoch = fed.nodes[HUB]
        .service
        .group_epoch(&group)
        .await?
        .ok_or_else(|| anyhow!("the hub has no group"))?;
    let mut joined = Vec::new();
    for (mut client, kp, added_in) in senders {
        let id = client.id().clone();
        let queued = b.service.store().client_queue(id.as_str(), 0, 1000).await?;
        let first = queued.first().ok_or_else(|| anyhow!("{id} got nothing"))?;
        let welcome = WelcomeMessage::from_bytes(&first.message).context("not a Welcome")?;
        let info = client
            .welcome_information_request(&group, added_in, &kp)
            .map_err(|e| anyhow!("{e}"))?;
        let DSResponseBody::WelcomeInfo(tree) = fed
            .submit(&id, DsEndpoint::WelcomeInformation, &info)
            .await?
        else {
            bail!("no welcome information for {id}")
        };
        client.join(&welcome, &tree).map_err(|e| anyhow!("{e}"))?;
        for q in &queued[1..] {
            if q.epoch >= added_in {
                let m = DeliverableMessage::from_bytes(&q.message)?;
                client.process(&m).map_err(|e| anyhow!("{id}: {e}"))?;
            }
        }
        if let Some(last) = queued.last() {
            b.service
                .store()
                .acknowledge(id.to_string(), last.seq)
                .await?;
        }
        ensure!(
            client.epoch_and_tree_hash(&group).as_ref() == Some(&hub_epoch),
            "{id} is not in sync with the hub"
        );
        joined.push(client);
    }
    println!(
        "  group {k} of {} members on a.example ({} commits of adds), {} senders on b.example joined: {:.1} s",
        o.members,
        o.commits,
        joined.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(Conversation {
        group,
        senders: joined,
        probe: probe.ok_or_else(|| anyhow!("no member on c.example"))?,
    })
}

/// Pre-generated requests: their bodies, and the message each carries
/// keyed by its last 32 bytes (what the probe finds in c.example's queue).
struct Requests {
    bodies: Vec<Bytes>,
    index: HashMap<[u8; 32], usize>,
}

/// `count` requests over `convs`, one group after the other in turn.
fn generate_all(convs: &mut [Conversation], count: usize, size: usize) -> anyhow::Result<Requests> {
    let started = Instant::now();
    let share = count.div_ceil(convs.len());
    let mut each = Vec::new();
    for conv in convs.iter_mut() {
        each.push(generate(conv, share, size)?.bodies.into_iter());
    }
    let mut bodies = Vec::with_capacity(count);
    while bodies.len() < count {
        let before = bodies.len();
        for list in each.iter_mut() {
            if let Some(body) = list.next()
                && bodies.len() < count
            {
                bodies.push(body);
            }
        }
        ensure!(bodies.len() > before, "too few requests generated");
    }
    // The message each carries, keyed by its last 32 bytes.
    let mut index = HashMap::with_capacity(count);
    for (i, body) in bodies.iter().enumerate() {
        let request = DSRequest::decode_exact(body, &mimid_wire::Limits::default())?;
        let DSRequestBody::SendMessage(m) = &request.request_body else {
            bail!("not a send_message");
        };
        let message = m.application_message.as_bytes();
        let key: [u8; 32] = message[message.len() - 32..].try_into()?;
        index.insert(key, i);
    }
    println!(
        "  {} requests of {} bytes generated in {:.1} s",
        bodies.len(),
        bodies.first().map_or(0, |b| b.len()),
        started.elapsed().as_secs_f64()
    );
    Ok(Requests { bodies, index })
}

fn generate(conv: &mut Conversation, count: usize, size: usize) -> anyhow::Result<Requests> {
    let senders = conv.senders.len();
    let group = conv.group.clone();
    // Each sender's messages, generated on two threads.
    let half = senders.div_ceil(2);
    let per_sender = count.div_ceil(senders);
    let plaintext = vec![0x61; size];
    type Made = anyhow::Result<Vec<(Bytes, [u8; 32])>>;
    let made: Vec<Made> = std::thread::scope(|s| {
        let handles: Vec<_> = conv
            .senders
            .chunks_mut(half)
            .map(|chunk| {
                let (group, plaintext) = (&group, &plaintext);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for _ in 0..per_sender {
                        for client in chunk.iter_mut() {
                            let request = client
                                .send_message(group, plaintext)
                                .map_err(|e| anyhow!("{e}"))?;
                            let DSRequestBody::SendMessage(m) = &request.request_body else {
                                bail!("not a send_message");
                            };
                            let message = m.application_message.as_bytes();
                            let key: [u8; 32] = message[message.len() - 32..].try_into()?;
                            out.push((Bytes::from(request.to_bytes()?), key));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("panicked"))))
            .collect()
    });
    let mut lists = Vec::new();
    for m in made {
        lists.push(m?);
    }
    // Interleave the two threads' lists.
    let mut bodies = Vec::with_capacity(count);
    let mut index = HashMap::with_capacity(count);
    let mut iters: Vec<_> = lists.into_iter().map(|l| l.into_iter()).collect();
    'outer: loop {
        let mut any = false;
        for it in iters.iter_mut() {
            if let Some((body, key)) = it.next() {
                any = true;
                if bodies.len() == count {
                    break 'outer;
                }
                index.insert(key, bodies.len());
                bodies.push(body);
            }
        }
        if !any {
            break;
        }
    }
    Ok(Requests { bodies, index })
}

// ---------------------------------------------------------------------------
// The bare endpoint.

/// axum 0.8 over tokio-rustls and hyper-util (HTTP/1.1 or h2 by ALPN):
/// reads the body, answers `response_len` bytes. No auth, no store.
async fn bare_server(
    leaf: Leaf,
    response_len: usize,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let answer = Bytes::from(vec![0u8; response_len]);
    let router = axum::Router::new().route(
        PATH,
        axum::routing::post(move |body: Bytes| {
            let answer = answer.clone();
            async move {
                std::hint::black_box(&body);
                (
                    [(http::header::CONTENT_TYPE, "application/octet-stream")],
                    answer,
                )
            }
        }),
    );
    serve_tls(tls::server_config(leaf.0, leaf.1, None)?, router).await
}

/// What every request to a DS of the seed costs before the DS does any of
/// its own work: the authenticated endpoint ("floor"). Like the bare
/// endpoint, plus the checks no conforming DS can skip, made by mimid's own
/// code: the sending provider authenticated by the transport's
/// [`Authenticator`] (the provider signature, its timestamp window and
/// replay cache, or the client certificate's name), the body decoded as a
/// `DSRequest`, and its client signature checked against the signer's key,
/// both signatures in batches on a `BatchVerifier` of its own as mimid
/// does. No group state, no store, no fan-out.
struct Floor {
    auth: Authenticator,
    verifier: Arc<BatchVerifier>,
    /// The senders' keys by group and leaf index, from the hub's stored
    /// groups.
    signers: HashMap<(Vec<u8>, u32), SignerKey>,
    answer: Bytes,
}

impl Floor {
    async fn check(
        &self,
        headers: &http::HeaderMap,
        certificates: &PeerCertificates,
        body: &[u8],
    ) -> anyhow::Result<()> {
        self.auth
            .authenticate("POST", PATH, headers, certificates, body, |_| Ok(()))
            .await?;
        let request = DSRequest::decode_exact(body, &Limits::default())?;
        let group = mimid_core::named_group(&request.request_body)?.context("no group")?;
        let index = mimid_core::claimed_signer(&request).context("no client signature")?;
        let key = self
            .signers
            .get(&(group.to_mls_bytes(), index))
            .context("unknown signer")?;
        let check = SignatureCheck::new(&request, key).context("no batchable signature")?;
        self.verifier
            .verify(check)
            .await
            .context("bad client signature")?;
        Ok(())
    }
}

async fn floor_server(
    fed: &Federation,
    convs: &[Conversation],
    response: Bytes,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let mut signers = HashMap::new();
    for conv in convs {
        let stored = fed.nodes[HUB]
            .service
            .store()
            .load_group(&conv.group.to_mls_bytes())
            .await?
            .context("the hub has no group")?;
        let group = HubGroup::from_bytes(&stored.state)?;
        for sender in &conv.senders {
            let index = sender
                .leaf_index(&conv.group)
                .context("a sender is no member")?;
            let key = group.signer_key(index).context("no leaf")??;
            signers.insert((conv.group.to_mls_bytes(), index), key);
        }
    }
    let verifier = Arc::new(BatchVerifier::start()?);
    let auth = Authenticator::new(
        AuthConfig {
            modes: PeerModes {
                default: fed.mode,
                peers: HashMap::new(),
            },
            ..AuthConfig::default()
        },
        DOMAINS[HUB].parse()?,
        Limits::default(),
        Arc::new(SystemClock),
        fed.nodes[HUB].client.clone(),
        Some(verifier.clone()),
    );
    let floor = Arc::new(Floor {
        auth,
        verifier,
        signers,
        answer: response,
    });
    let router = axum::Router::new().route(
        PATH,
        axum::routing::post(
            move |certificates: Option<axum::Extension<PeerCertificates>>,
                  headers: http::HeaderMap,
                  body: Bytes| {
                let floor = floor.clone();
                async move {
                    let certificates = certificates.map(|c| c.0).unwrap_or_default();
                    match floor.check(&headers, &certificates, &body).await {
                        Ok(()) => (
                            http::StatusCode::OK,
                            [(http::header::CONTENT_TYPE, "application/octet-stream")],
                            floor.answer.clone(),
                        ),
                        Err(e) => (
                            http::StatusCode::UNAUTHORIZED,
                            [(http::header::CONTENT_TYPE, "text/plain")],
                            Bytes::from(e.to_string()),
                        ),
                    }
                }
            },
        ),
    );
    let leaf = fed.pki.leaf(&["ds.a.example".into()], ip(0))?;
    let client_roots = fed.mode.mtls().then(|| fed.pki.roots.clone());
    serve_tls(tls::server_config(leaf.0, leaf.1, client_roots)?, router).await
}

/// Serves `router` over TLS (HTTP/1.1 or h2 by ALPN) on a fresh port of
/// a.example's address, as a plain tokio-rustls and hyper-util accept loop; each
/// request of a connection whose client presented a certificate carries
/// the chain (`PeerCertificates`).
async fn serve_tls(
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use tower::Service as _;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip(0), 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let certificates = tls.get_ref().1.peer_certificates().map(|chain| {
                    PeerCertificates::verified(Some(
                        chain.iter().map(|c| c.clone().into_owned()).collect(),
                    ))
                });
                let service = hyper::service::service_fn(
                    move |mut req: http::Request<hyper::body::Incoming>| {
                        if let Some(certificates) = &certificates {
                            req.extensions_mut().insert(certificates.clone());
                        }
                        router.clone().call(req)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    Ok((addr, task))
}

// ---------------------------------------------------------------------------
// The load generator.

/// Where and how the workers send.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
    tls: Arc<rustls::ClientConfig>,
    /// b.example's keys, to sign each request (signature mode).
    sign: Option<ProviderKeys>,
    /// `MIMI-Sender` (mTLS mode).
    sender_header: bool,
    /// Check that each answer is a `DSResponse` ok.
    check: bool,
}

fn target(fed: &Federation, addr: SocketAddr, check: bool) -> anyhow::Result<Target> {
    let cert = fed
        .mode
        .mtls()
        .then(|| (fed.leaves[RELAY].0.clone(), fed.leaves[RELAY].1.clone_key()));
    let mut config = tls::client_config(fed.pki.roots.clone(), cert)?;
    // One HTTP/1.1 keep-alive connection per worker.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Target {
        addr,
        host: format!("ds.a.example:{}", fed.port),
        tls: Arc::new(config),
        sign: fed.mode.signature().then(|| fed.keys[RELAY].clone()),
        sender_header: fed.mode.mtls(),
        check,
    })
}

/// When each request was sent (its first attempt), for the probe.
type SentAt = Arc<Vec<OnceLock<Instant>>>;

struct Run {
    wall: f64,
    latencies_us: Vec<u32>,
    cpu: Cpu,
    /// CPU when the first request went out.
    cpu_start: Cpu,
    response_len: usize,
    end: Instant,
}

async fn connect(
    t: &Target,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(t.addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("ds.a.example")?;
    let tls = tokio_rustls::TlsConnector::from(t.tls.clone())
        .connect(name, tcp)
        .await?;
    let (send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn one_request(
    t: &Target,
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    body: &Bytes,
) -> anyhow::Result<Bytes> {
    let mut req = http::Request::post(PATH)
        .header(http::header::HOST, &t.host)
        .header(http::header::CONTENT_TYPE, "application/octet-stream");
    let (b, a): (ProviderDomain, ProviderDomain) = (DOMAINS[RELAY].parse()?, DOMAINS[HUB].parse()?);
    if let Some(keys) = &t.sign {
        let signature = SignedRequest {
            sender: &b,
            recipient: &a,
            method: "POST",
            path: PATH,
            body,
            timestamp: now_secs(),
            nonce: random_nonce().map_err(|e| anyhow!("nonce: {e}"))?,
        }
        .sign(keys.current())?;
        req = req.header(PROVIDER_SIGNATURE_HEADER, encode_header(&signature)?);
    }
    if t.sender_header {
        req = req.header(SENDER_HEADER, DOMAINS[RELAY]);
    }
    send.ready().await?;
    let response = send
        .send_request(req.body(Full::new(body.clone()))?)
        .await?;
    let status = response.status();
    let answer = response.into_body().collect().await?.to_bytes();
    ensure!(status == http::StatusCode::OK, "HTTP {status}: {answer:?}");
    if t.check {
        let r = DSResponse::decode_exact(&answer, &Limits::default())?;
        ensure!(
            matches!(r.response_body, DSResponseBody::Ok),
            "refused: {:?}",
            r.response_body
        );
    }
    Ok(answer)
}

/// `connections` workers send `bodies` (the first
/// `WARMUP_PER_CONNECTION` each untimed), one request in flight each.
async fn drive(
    t: Target,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    sent_at: Option<SentAt>,
) -> anyhow::Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let response_len = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (t, bodies, next, barrier, sent_at, response_len) = (
            t.clone(),
            bodies.clone(),
            next.clone(),
            barrier.clone(),
            sent_at.clone(),
            response_len.clone(),
        );
        workers.push(tokio::spawn(async move {
            let result = async {
                let mut send = connect(&t).await?;
                let mut latencies = Vec::new();
                let mut timed = false;
                let mut sent = 0;
                loop {
                    if !timed && sent == WARMUP_PER_CONNECTION {
                        barrier.wait().await;
                        timed = true;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t0 = Instant::now();
                    if let Some(s) = &sent_at {
                        let _ = s[i].set(t0);
                    }
                    let answer = one_request(&t, &mut send, body).await?;
                    response_len.store(answer.len(), Ordering::Relaxed);
                    if timed {
                        latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    sent += 1;
                }
                Ok::<_, anyhow::Error>(latencies)
            }
            .await;
            if result.is_err() {
                // Never leave the others waiting at the barrier.
                next.store(usize::MAX / 2, Ordering::Relaxed);
            }
            (result, Instant::now())
        }));
    }
    barrier.wait().await;
    let (cpu0, wall0) = (Cpu::now(), Instant::now());
    let mut latencies_us = Vec::new();
    let mut end = wall0;
    let mut failure = None;
    for w in workers {
        let (result, done) = w.await?;
        end = end.max(done);
        match result {
            Ok(l) => latencies_us.extend(l),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let cpu = Cpu::now().since(&cpu0);
    latencies_us.sort_unstable();
    Ok(Run {
        wall: end.duration_since(wall0).as_secs_f64(),
        latencies_us,
        cpu,
        cpu_start: cpu0,
        response_len: response_len.load(Ordering::Relaxed),
        end,
    })
}

/// Sends `bodies` one at a time, 50 ms apart, on one connection
/// (indices from `first` in `sent_at`).
async fn quiet(t: &Target, bodies: &[Bytes], first: usize, sent_at: &SentAt) -> anyhow::Result<()> {
    let mut send = connect(t).await?;
    for (i, body) in bodies.iter().enumerate() {
        let _ = sent_at[first + i].set(Instant::now());
        one_request(t, &mut send, body).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

// ---------------------------------------------------------------------------
// CPU per thread.

/// CPU seconds per thread (by id, with its name), and of the whole process.
struct Cpu {
    threads: HashMap<u32, (String, f64)>,
    process: f64,
}

impl Cpu {
    fn now() -> Cpu {
        let mut threads = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                    continue;
                };
                let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                    continue;
                };
                let name = stat[open + 1..close].to_string();
                let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
                let ticks = |i: usize| {
                    fields
                        .get(i)
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                threads.insert(tid, (name, (ticks(11) + ticks(12)) / 100.0));
            }
        }
        Cpu {
            threads,
            process: cpu_seconds(),
        }
    }

    /// CPU used since `before`, per thread name (threads that ended in
    /// between are counted in `process` only).
    fn since(&self, before: &Cpu) -> Cpu {
        let mut threads = HashMap::new();
        for (tid, (name, secs)) in &self.threads {
            let old = before.threads.get(tid).map_or(0.0, |(_, s)| *s);
            threads.insert(*tid, (name.clone(), secs - old));
        }
        Cpu {
            threads,
            process: self.process - before.process,
        }
    }

    /// Seconds per thread name, sorted by time.
    fn by_name(&self) -> Vec<(String, f64)> {
        let mut names: HashMap<String, f64> = HashMap::new();
        for (name, secs) in self.threads.values() {
            let name = if name.starts_with("sqlx-sqlite") {
                "sqlx-sqlite-*".to_string()
            } else {
                name.clone()
            };
            *names.entry(name).or_default() += secs;
        }
        let listed: f64 = names.values().sum();
        if self.process - listed > 0.005 {
            names.insert("(threads that ended)".into(), self.process - listed);
        }
        let mut v: Vec<_> = names.into_iter().filter(|(_, s)| *s >= 0.005).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    fn generator(&self) -> f64 {
        self.threads
            .values()
            .filter(|(n, _)| n == "gen")
            .map(|(_, s)| s)
            .sum()
    }
}

// ---------------------------------------------------------------------------
// The probe on c.example.

/// Polls the probe client's queue on c.example every 5 ms; records how long
/// after its request each message was queued there.
struct Probe {
    /// (request index, when seen, send -> seen).
    latencies: Arc<Mutex<Vec<(usize, Instant, Duration)>>>,
    seen: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

fn start_probe(
    fed: &Federation,
    probes: Vec<String>,
    index: Arc<HashMap<[u8; 32], usize>>,
    sent_at: SentAt,
) -> Probe {
    let service = fed.nodes[PROBE].service.clone();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(AtomicUsize::new(0));
    let (l, s) = (latencies.clone(), seen.clone());
    let task = tokio::spawn(async move {
        // Every 5 ms, also when something came (at once, under load, was
        // a read and an acknowledgement, a write transaction of c.example,
        // per delivery, charged to mimid). Acknowledged once a second, to
        // keep the queue short.
        let mut after = vec![0; probes.len()];
        let mut acknowledged = Instant::now();
        loop {
            let acknowledge = acknowledged.elapsed() >= Duration::from_secs(1);
            if acknowledge {
                acknowledged = Instant::now();
            }
            for (probe, after) in probes.iter().zip(after.iter_mut()) {
                match service.store().client_queue(probe, *after, 2000).await {
                    Ok(queued) if !queued.is_empty() => {
                        let now = Instant::now();
                        for q in &queued {
                            if q.message.len() < 32 {
                                continue;
                            }
                            let key: [u8; 32] = match q.message[q.message.len() - 32..].try_into() {
                                Ok(k) => k,
                                Err(_) => continue,
                            };
                            let Some(&i) = index.get(&key) else { continue };
                            if let Some(sent) = sent_at[i].get() {
                                if let Ok(mut l) = l.lock() {
                                    l.push((i, now, now.duration_since(*sent)));
                                }
                                s.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        *after = queued.last().map_or(*after, |q| q.seq);
                    }
                    _ => {}
                }
                if acknowledge && *after > 0 {
                    let _ = service.store().acknowledge(probe.clone(), *after).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    Probe {
        latencies,
        seen,
        task,
    }
}

// ---------------------------------------------------------------------------
// Load mode.

struct OutboxRow {
    mode: AuthMode,
    quiet_p50: f64,
    p50: f64,
    p99: f64,
    reached: usize,
    count: usize,
    during_rate: f64,
    after_rate: f64,
    backlog: usize,
    lookup_ms: f64,
}

struct Row {
    name: String,
    run: Run,
    requests: usize,
}

fn print_run(name: &str, run: &Run, requests: usize) {
    let rate = requests as f64 / run.wall;
    let gen_cpu = run.cpu.generator();
    println!(
        "  {name}: {requests} requests in {:.2} s: {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms; CPU {:.2} s ({:.0} % of 2 cores): server {:.2} s ({:.0} µs/request), load generator {:.2} s ({:.0} µs/request)",
        run.wall,
        percentile(&run.latencies_us, 0.5),
        percentile(&run.latencies_us, 0.99),
        run.cpu.process,
        100.0 * run.cpu.process / run.wall / 2.0,
        run.cpu.process - gen_cpu,
        1e6 * (run.cpu.process - gen_cpu) / requests as f64,
        gen_cpu,
        1e6 * gen_cpu / requests as f64,
    );
    let parts: Vec<String> = run
        .cpu
        .by_name()
        .iter()
        .map(|(n, s)| format!("{n} {s:.2}"))
        .collect();
    println!("    CPU seconds by thread: {}", parts.join(", "));
}

fn load_mode(
    o: &Options,
    server_rt: &tokio::runtime::Runtime,
    gen_rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    println!(
        "https_load: {} send_message requests per mode, {} connections (HTTP/1.1 keep-alive, one each), {} group(s) of {} members, {} senders each, {} bytes of plaintext, {} outbox lanes",
        o.requests, o.connections, o.groups, o.members, o.senders, o.size, o.lanes
    );
    let total = Instant::now();
    let mut rows = Vec::new();
    let mut outbox_rows = Vec::new();
    for &mode in &o.modes {
        println!("mode {mode:?}:");
        let fed = server_rt.block_on(Federation::start(mode, o.lanes))?;
        let (peak, rss) = memory_kib();
        println!("  providers started: memory peak {peak} KiB, now {rss} KiB (process)");
        let mut convs = Vec::new();
        for k in 0..o.groups {
            convs.push(server_rt.block_on(build_group(&fed, o, k))?);
        }
        let count = o.requests + o.connections * WARMUP_PER_CONNECTION;
        let requests = generate_all(&mut convs, count + QUIET, o.size)?;
        let request_len = requests.bodies[0].len();

        // The bare endpoint first, with the response size of a
        // send_message answer (DSResponse ok: 3 bytes).
        let ok_answer = Bytes::from(
            DSResponse {
                protocol_version: 1,
                response_body: DSResponseBody::Ok,
            }
            .to_bytes()?,
        );
        let response_len = ok_answer.len();
        let _guard = server_rt.enter();
        let (bare_addr, bare_task) = server_rt.block_on(bare_server(
            fed.pki.leaf(&["ds.a.example".into()], ip(0))?,
            response_len,
        ))?;
        let bare_body = Bytes::from(vec![0x5a; request_len]);
        // Four times as many requests: the bare endpoint is much faster.
        let bare_count = BARE_FACTOR * o.requests;
        let bare_bodies = Arc::new(vec![
            bare_body;
            bare_count + o.connections * WARMUP_PER_CONNECTION
        ]);
        let bare = gen_rt.block_on(drive(
            target(&fed, bare_addr, false)?,
            bare_bodies,
            o.connections,
            None,
        ))?;
        bare_task.abort();
        let bare_name = format!("bare axum+rustls (as {mode:?})");
        print_run(&bare_name, &bare, bare_count);

        // The floor: the real requests, twice over (it keeps nothing; the
        // provider signature's nonce is fresh on every send).
        let (floor_addr, floor_task) =
            server_rt.block_on(floor_server(&fed, &convs, ok_answer.clone()))?;
        let floor_count = FLOOR_FACTOR * o.requests;
        let floor_bodies: Vec<Bytes> = requests
            .bodies
            .iter()
            .take(count)
            .cycle()
            .take(floor_count + o.connections * WARMUP_PER_CONNECTION)
            .cloned()
            .collect();
        let floor = gen_rt.block_on(drive(
            target(&fed, floor_addr, true)?,
            Arc::new(floor_bodies),
            o.connections,
            None,
        ))?;
        floor_task.abort();
        let floor_name = format!("floor: authentication only (as {mode:?})");
        print_run(&floor_name, &floor, floor_count);

        // mimid: first a few messages one at a time (the pipeline's
        // latency without load), then the load.
        let sent_at: SentAt = Arc::new((0..count + QUIET).map(|_| OnceLock::new()).collect());
        let probe = {
            let _g = gen_rt.enter();
            start_probe(
                &fed,
                convs.iter().map(|c| c.probe.clone()).collect(),
                Arc::new(requests.index),
                sent_at.clone(),
            )
        };
        let hub = target(&fed, fed.nodes[HUB].local_addr(), true)?;
        let mut bodies = requests.bodies;
        let quiet_bodies = bodies.split_off(count);
        gen_rt.block_on(quiet(&hub, &quiet_bodies, count, &sent_at))?;
        let waited = Instant::now();
        while probe.seen.load(Ordering::Relaxed) < QUIET && waited.elapsed().as_secs() < 10 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let quiet_lat = {
            let mut l = probe.latencies.lock().map_err(|_| anyhow!("poisoned"))?;
            let q: Vec<u32> = l.iter().map(|r| r.2.as_micros() as u32).collect();
            l.clear();
            q
        };
        ensure!(
            quiet_lat.len() == QUIET,
            "{} quiet messages reached c.example",
            quiet_lat.len()
        );
        let mut quiet_sorted = quiet_lat.clone();
        quiet_sorted.sort_unstable();
        println!(
            "  {QUIET} messages one at a time: send -> queued at c.example p50 {:.1} ms, max {:.1} ms (the probe polls every 5 ms)",
            percentile(&quiet_sorted, 0.5),
            percentile(&quiet_sorted, 1.0),
        );
        println!("  mimid load starts");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        let transactions = |fed: &Federation| -> Vec<u64> {
            fed.nodes
                .iter()
                .map(|n| n.service.store().transactions_committed())
                .collect()
        };
        let before = transactions(&fed);
        let run = gen_rt.block_on(drive(hub, Arc::new(bodies), o.connections, Some(sent_at)))?;
        let during: Vec<String> = transactions(&fed)
            .iter()
            .zip(&before)
            .zip(&fed.nodes)
            .map(|((after, before), n)| format!("{} {}", n.domain, after - before))
            .collect();
        println!(
            "    store transactions during the load: {}",
            during.join(", ")
        );
        ensure!(
            run.response_len == response_len,
            "mimid answered {} bytes",
            run.response_len
        );
        let mimid_name = format!("mimid ({mode:?})");
        print_run(&mimid_name, &run, o.requests);
        let (peak, rss) = memory_kib();
        println!("    memory after the load: peak {peak} KiB, now {rss} KiB (process)");

        // The outbox: wait until every message reached the probe's queue,
        // or `wait` seconds.
        // Then the whole cost of the messages: the server's CPU from the
        // first request until every job was delivered (the deliveries the
        // outbox had not made by the last answer included).
        let drained = || -> anyhow::Result<bool> {
            let left = server_rt.block_on(fed.nodes[HUB].service.store().job_destinations())?;
            Ok(left.is_empty())
        };
        let mut delivered_cpu = None;
        while run.end.elapsed().as_secs() < o.wait {
            // `seen` counts the quiet messages too.
            if probe.seen.load(Ordering::Relaxed) >= QUIET + count && drained()? {
                let cpu = Cpu::now().since(&run.cpu_start);
                delivered_cpu = Some((cpu.process - cpu.generator(), run.end.elapsed()));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        probe.task.abort();
        match delivered_cpu {
            Some((secs, after)) => println!(
                "  every job delivered {:.1} s after the last answer: server CPU from the first request until then {:.2} s, {:.0} µs per request",
                after.as_secs_f64(),
                secs,
                secs * 1e6 / o.requests as f64
            ),
            None => println!(
                "  the outbox had not drained within {} s of the last answer",
                o.wait
            ),
        }
        let backlog = server_rt.block_on(async {
            let mut n = 0;
            for d in &DOMAINS[1..] {
                n += fed.nodes[HUB]
                    .service
                    .store()
                    .pending_jobs(d, 1_000_000)
                    .await?
                    .len();
            }
            Ok::<_, anyhow::Error>(n)
        })?;
        let mut lat = probe
            .latencies
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .clone();
        lat.sort_by_key(|r| r.1);
        let reached = lat.len();
        let during = lat.iter().filter(|r| r.1 <= run.end).count();
        let after = lat.last().map_or(0.0, |r| {
            r.1.saturating_duration_since(run.end).as_secs_f64()
        });
        let mut d: Vec<u32> = lat
            .iter()
            .map(|r| r.2.as_micros().min(u32::MAX as u128) as u32)
            .collect();
        d.sort_unstable();
        let during_rate = during as f64 / run.wall;
        let after_rate = (reached - during) as f64 / after.max(1e-3);
        println!(
            "  send -> queued at c.example: {reached} of {count} messages within {} s of the last answer ({during} during the load: {during_rate:.0}/s; {} after: {after_rate:.0}/s); p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; jobs left in a.example's outbox: {backlog}",
            o.wait,
            reached - during,
            percentile(&d, 0.5),
            percentile(&d, 0.99),
            percentile(&d, 1.0),
        );
        // Where a delivery's time goes on the guest side: the directory
        // lookup of its recipients (33 c.example clients).
        let recipients: Vec<String> = (1..o.members)
            .filter(|i| i % 3 == PROBE)
            .map(|i| format!("mimi://c.example/d/u{i}/dev"))
            .collect();
        let lookup = server_rt.block_on(async {
            let store = fed.nodes[PROBE].service.store();
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let known = store.known_clients(&recipients).await?;
                times.push(t.elapsed());
                ensure!(known.iter().all(|k| *k), "unknown recipients");
            }
            times.sort();
            Ok::<_, anyhow::Error>(times[times.len() / 2])
        })?;
        println!(
            "  c.example's directory lookup of a delivery's {} recipients (Store::known_clients, idle, median of 20): {:.2} ms",
            recipients.len(),
            lookup.as_secs_f64() * 1e3
        );
        outbox_rows.push(OutboxRow {
            mode,
            quiet_p50: percentile(&quiet_sorted, 0.5),
            p50: percentile(&d, 0.5),
            p99: percentile(&d, 0.99),
            reached,
            count,
            during_rate,
            after_rate,
            backlog,
            lookup_ms: lookup.as_secs_f64() * 1e3,
        });
        rows.push(Row {
            name: bare_name,
            run: bare,
            requests: bare_count,
        });
        rows.push(Row {
            name: floor_name,
            run: floor,
            requests: floor_count,
        });
        rows.push(Row {
            name: mimid_name,
            run,
            requests: o.requests,
        });
        drop(fed);
    }

    println!();
    println!(
        "| run | requests/s | p50 ms | p99 ms | CPU µs/request (server) | CPU µs/request (generator) | / bare | / floor |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let (mut bare_rate, mut floor_rate) = (f64::NAN, f64::NAN);
    for r in &rows {
        let rate = r.requests as f64 / r.run.wall;
        let gen_cpu = r.run.cpu.generator();
        let (ratio, to_floor) = if r.name.starts_with("bare") {
            bare_rate = rate;
            (String::new(), String::new())
        } else if r.name.starts_with("floor") {
            floor_rate = rate;
            (format!("{:.2}", rate / bare_rate), String::new())
        } else {
            (
                format!("{:.2}", rate / bare_rate),
                format!("{:.2}", rate / floor_rate),
            )
        };
        println!(
            "| {} | {rate:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {ratio} | {to_floor} |",
            r.name,
            percentile(&r.run.latencies_us, 0.5),
            percentile(&r.run.latencies_us, 0.99),
            1e6 * (r.run.cpu.process - gen_cpu) / r.requests as f64,
            1e6 * gen_cpu / r.requests as f64,
        );
    }
    println!();
    println!(
        "| mode | unloaded send -> c.example p50 ms | under load p50 ms | p99 ms | reached c.example within the wait | delivered/s during the load | after | jobs left | directory lookup ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in outbox_rows {
        println!(
            "| {:?} | {:.1} | {:.0} | {:.0} | {} of {} | {:.0} | {:.0} | {} | {:.2} |",
            r.mode,
            r.quiet_p50,
            r.p50,
            r.p99,
            r.reached,
            r.count,
            r.during_rate,
            r.after_rate,
            r.backlog,
            r.lookup_ms
        );
    }
    let (peak, rss) = memory_kib();
    println!(
        "whole run {:.1} s; memory peak {peak} KiB, now {rss} KiB",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Groups mode.

async fn groups_mode(groups: usize, concurrency: usize) -> anyhow::Result<()> {
    let fed = Arc::new(
        Federation::start(
            AuthMode::Signature,
            OutboxConfig::new("a.example".parse()?).lanes,
        )
        .await?,
    );
    let (peak0, rss0) = memory_kib();
    println!(
        "groups mode: {groups} groups of 3 (a.example, b.example, c.example), {concurrency} at a time; three providers started: peak {peak0} KiB, now {rss0} KiB"
    );
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (fed, next, done) = (fed.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= groups {
                    return Ok::<_, anyhow::Error>(());
                }
                small_group(&fed, i).await?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % (groups / 10).max(1) == 0 {
                    let (peak, rss) = memory_kib();
                    println!(
                        "  {n} groups: {:.1} s, peak {peak} KiB, now {rss} KiB",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let created = started.elapsed();
    let drained = fed.drain(Duration::from_secs(300)).await?;
    let stored = fed.nodes[HUB].service.store().group_count().await?;
    let (peak, rss) = memory_kib();
    println!(
        "{groups} groups created in {:.1} s ({:.0}/s), outbox empty {:.1} s later ({:.1} s of process CPU in all); a.example stores {stored} group slots; peak {peak} KiB ({:.1} MiB), now {rss} KiB",
        created.as_secs_f64(),
        groups as f64 / created.as_secs_f64(),
        drained.as_secs_f64(),
        cpu_seconds(),
        peak as f64 / 1024.0,
    );
    Ok(())
}

/// One group of three: created by a fresh a.example client, which adds
/// fresh clients of b.example and c.example in one commit.
async fn small_group(fed: &Federation, i: usize) -> anyhow::Result<()> {
    let creator_id: ClientId = format!("mimi://a.example/d/g{i}/dev").parse()?;
    let mut creator = fed.client(creator_id.as_str()).await?;
    let mut kps = Vec::new();
    for d in &DOMAINS[1..] {
        let member = fed.client(&format!("mimi://{d}/d/g{i}/dev")).await?;
        kps.push(
            member
                .key_package(false, false)
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    let group = fed.request_group(&creator_id).await?;
    let create = creator
        .create_group(&group, GroupKind::Regular)
        .map_err(|e| anyhow!("{e}"))?;
    fed.submit(&creator_id, DsEndpoint::GroupOperation, &create)
        .await?;
    let add = creator
        .add(&group, &kps, false)
        .map_err(|e| anyhow!("{e}"))?;
    fed.submit(&creator_id, DsEndpoint::GroupOperation, &add)
        .await?;
    Ok(())
}
