//! `mimid demo`: three providers on loopback, each its own domain,
//! certificate (from a throwaway CA), provider key and SQLite store, found
//! through their real well-known endpoints. OpenMLS clients talk to their
//! own provider through its Rust API (the client API is the people issue's)
//! and hold a conversation across all three: a group hosted on a.example
//! with members on every provider, messages every way, an update, a
//! provider that is down for a while and catches up, a removal. Every
//! plaintext and every member's epoch and tree hash is checked; any failed
//! check is an error.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use mimid_client::MimiClient;
use mimid_core::DsEndpoint;
use mimid_service::outbox::OutboxConfig;
use mimid_store::{Durability, Store};
use mimid_transport::auth::{AuthMode, PeerModes};
use mimid_transport::discovery::Authority;
use mimid_transport::node::{Node, NodeSettings};
use mimid_transport::{ProviderKey, ProviderKeys, SystemClock, tls};
use mimid_wire::{
    DSAuthData, DSRequest, DSRequestBody, DSResponseBody, DeliverableMessage, GroupId,
    GroupIdField, GroupKind, ProviderDomain, WelcomeMessage,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.example"];
const ALICE: &str = "mimi://a.example/d/alice/laptop";
const BOB: &str = "mimi://b.example/d/bob/phone";
const CAROL: &str = "mimi://c.example/d/carol/tablet";

/// One provider of the demo, and what it takes to start it again.
struct Member {
    domain: ProviderDomain,
    ip: IpAddr,
    dir: PathBuf,
    node: Option<Node>,
}

struct Demo {
    port: u16,
    roots: Arc<rustls::RootCertStore>,
    members: HashMap<String, Member>,
    mode: AuthMode,
    ca_path: PathBuf,
    clients: HashMap<&'static str, MimiClient>,
    /// The last queue position each client has read.
    read: HashMap<&'static str, u64>,
}

fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

/// Runs the demo in `dir` (a fresh directory); with `hold`, keeps the
/// providers running afterwards until interrupted.
pub async fn run(dir: &Path, mode: AuthMode, hold: bool) -> anyhow::Result<()> {
    let mut demo = Demo::start(dir, mode).await?;
    demo.conversation().await?;
    say("all checks passed");
    if hold {
        for m in demo.members.values() {
            if let Some(node) = &m.node {
                say(format!(
                    "{}: https://{}  (CA: {})",
                    m.domain,
                    node.local_addr(),
                    demo.ca_path.display()
                ));
            }
        }
        say("ready");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}

impl Demo {
    async fn start(dir: &Path, mode: AuthMode) -> anyhow::Result<Demo> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mimid demo CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem())?;
        let issuer = Issuer::new(ca_params, ca_key);
        let roots = tls::root_store(&tls::load_certs(&ca_path)?, false)?;

        // One port on 127.0.0.2, .3 and .4, so that discovery can ask each
        // provider domain's well-known path on the same port.
        let (port, listeners) = bind_three().await?;
        let mut members = HashMap::new();
        for ((i, domain), listener) in DOMAINS.iter().enumerate().zip(listeners) {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8));
            let member_dir = dir.join(domain);
            std::fs::create_dir_all(&member_dir)?;
            // The DS host and the provider domain share the certificate;
            // mutual TLS needs the provider domain in it.
            let key = KeyPair::generate()?;
            let mut params =
                CertificateParams::new(vec![domain.to_string(), format!("ds.{domain}")])?;
            params.subject_alt_names.push(SanType::IpAddress(ip));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &issuer)?;
            std::fs::write(member_dir.join("cert.pem"), cert.pem())?;
            std::fs::write(member_dir.join("key.pem"), key.serialize_pem())?;
            let now = mimid_transport::Clock::now(&SystemClock);
            let provider_key = ProviderKey::generate(now - 60, now + 365 * 86_400)
                .map_err(|e| anyhow!("provider key: {e}"))?;
            provider_key.save(&member_dir.join("provider.key"))?;
            let mut member = Member {
                domain: domain.parse()?,
                ip,
                dir: member_dir,
                node: None,
            };
            member.node = Some(member.start(listener, port, &roots, mode).await?);
            members.insert(domain.to_string(), member);
        }
        say(format!(
            "three providers on loopback, port {port}, provider authentication: {}",
            match mode {
                AuthMode::Signature => "signatures",
                AuthMode::Mtls => "mutual TLS",
                AuthMode::Both => "signatures and mutual TLS",
            }
        ));
        let mut clients = HashMap::new();
        for id in [ALICE, BOB, CAROL] {
            let client = MimiClient::new(id.parse()?).map_err(|e| anyhow!("{e}"))?;
            let domain = client.id().domain().to_string();
            let node = members[&domain].node()?;
            node.service
                .store()
                .add_client(id.to_string(), client.id().user().to_string(), now_secs())
                .await?;
            clients.insert(id, client);
        }
        Ok(Demo {
            port,
            roots,
            members,
            mode,
            ca_path,
            clients,
            read: HashMap::new(),
        })
    }

    fn node(&self, domain: &str) -> anyhow::Result<&Node> {
        self.members
            .get(domain)
            .ok_or_else(|| anyhow!("no provider {domain}"))?
            .node()
    }

    fn client(&mut self, id: &'static str) -> anyhow::Result<&mut MimiClient> {
        self.clients
            .get_mut(id)
            .ok_or_else(|| anyhow!("no client {id}"))
    }

    /// A client's request, through its own provider.
    async fn submit(
        &self,
        who: &str,
        endpoint: DsEndpoint,
        request: &DSRequest,
    ) -> anyhow::Result<DSResponseBody> {
        let domain = who.parse::<mimid_wire::ClientId>()?.domain().to_string();
        self.node(&domain)?
            .submit(endpoint, request)
            .await
            .map_err(|e| anyhow!("{who}'s request was refused: {e}"))
    }

    /// Waits for the next `n` messages in a client's queue (up to 30 s),
    /// and acknowledges them.
    async fn receive(&mut self, who: &'static str, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
        let domain = who.parse::<mimid_wire::ClientId>()?.domain().to_string();
        let after = self.read.get(who).copied().unwrap_or(0);
        for _ in 0..3000 {
            let store = self.node(&domain)?.service.store();
            let queued = store.client_queue(who, after, n as u32).await?;
            if queued.len() >= n {
                let last = queued.last().map_or(after, |q| q.seq);
                store.acknowledge(who.to_string(), last).await?;
                self.read.insert(who, last);
                return Ok(queued.into_iter().map(|q| q.message).collect());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("{who} did not receive {n} messages within 30 s")
    }

    /// Receives one message for each of `who` and checks it is `plaintext`.
    async fn expect_text(&mut self, who: &[&'static str], plaintext: &str) -> anyhow::Result<()> {
        for &w in who {
            let message = self.receive(w, 1).await?.remove(0);
            let message = DeliverableMessage::from_bytes(&message)?;
            let got = self
                .client(w)?
                .process(&message)
                .map_err(|e| anyhow!("{w}: {e}"))?
                .ok_or_else(|| anyhow!("{w} got no application message"))?;
            ensure!(
                got == plaintext.as_bytes(),
                "{w} decrypted {:?}, not {plaintext:?}",
                String::from_utf8_lossy(&got)
            );
            say(format!("  {w} reads {plaintext:?}"));
        }
        Ok(())
    }

    /// Receives one handshake message for each of `who` and applies it.
    async fn expect_commit(&mut self, who: &[&'static str]) -> anyhow::Result<()> {
        for &w in who {
            let message = self.receive(w, 1).await?.remove(0);
            let message = DeliverableMessage::from_bytes(&message)?;
            self.client(w)?
                .process(&message)
                .map_err(|e| anyhow!("{w}: {e}"))?;
        }
        Ok(())
    }

    async fn send(&mut self, who: &'static str, group: &GroupId, text: &str) -> anyhow::Result<()> {
        let request = self
            .client(who)?
            .send_message(group, text.as_bytes())
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(who, DsEndpoint::GroupOperation, &request)
            .await?;
        say(format!("{who} sends {text:?}"));
        Ok(())
    }

    /// Every listed client's epoch and tree hash equal the hub's.
    async fn check_in_sync(&self, group: &GroupId, who: &[&'static str]) -> anyhow::Result<()> {
        let hub = self
            .node("a.example")?
            .service
            .group_epoch(group)
            .await?
            .ok_or_else(|| anyhow!("the hub has no group"))?;
        for w in who {
            let mine = self.clients[w]
                .epoch_and_tree_hash(group)
                .ok_or_else(|| anyhow!("{w} is not in the group"))?;
            ensure!(
                mine == hub,
                "{w} is at epoch {}, the hub at {}",
                mine.0,
                hub.0
            );
        }
        say(format!(
            "  epoch {} and tree hash {}… agree at the hub and {}",
            hub.0,
            hex::encode(&hub.1[..6]),
            who.join(", ")
        ));
        Ok(())
    }

    async fn conversation(&mut self) -> anyhow::Result<()> {
        // A group on a.example.
        let ask = DSRequest {
            version: 1,
            request_body: DSRequestBody::RequestGroupId,
            authentication_data: DSAuthData::Anonymous,
        };
        let DSResponseBody::GroupId(GroupIdField(group)) =
            self.submit(ALICE, DsEndpoint::GroupOperation, &ask).await?
        else {
            bail!("no group id")
        };
        let create = self
            .client(ALICE)?
            .create_group(&group, GroupKind::Regular)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(ALICE, DsEndpoint::GroupOperation, &create)
            .await?;
        say(format!("{ALICE} creates a group hosted on a.example"));

        // Bob and Carol, on the other providers, are added and join.
        let bob_kp = self
            .client(BOB)?
            .key_package(false, false)
            .map_err(|e| anyhow!("{e}"))?;
        let carol_kp = self
            .client(CAROL)?
            .key_package(false, false)
            .map_err(|e| anyhow!("{e}"))?;
        let add = self
            .client(ALICE)?
            .add(&group, &[bob_kp.clone(), carol_kp.clone()], false)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(ALICE, DsEndpoint::GroupOperation, &add).await?;
        self.client(ALICE)?
            .merge_pending_commit(&group)
            .map_err(|e| anyhow!("{e}"))?;
        say(format!("{ALICE} adds {BOB} and {CAROL}"));
        // The epoch the joiners were added in: the one Alice's add made.
        let added_in = self.clients[ALICE]
            .epoch_and_tree_hash(&group)
            .map_or(0, |(epoch, _)| epoch);
        for (who, kp) in [(BOB, bob_kp), (CAROL, carol_kp)] {
            let welcome = self.receive(who, 1).await?.remove(0);
            let welcome = WelcomeMessage::from_bytes(&welcome)
                .context("the first message is not a Welcome")?;
            let info = self
                .client(who)?
                .welcome_information_request(&group, added_in, &kp)
                .map_err(|e| anyhow!("{e}"))?;
            let DSResponseBody::WelcomeInfo(tree) = self
                .submit(who, DsEndpoint::WelcomeInformation, &info)
                .await?
            else {
                bail!("no welcome information for {who}")
            };
            let joined = self
                .client(who)?
                .join(&welcome, &tree)
                .map_err(|e| anyhow!("{e}"))?;
            ensure!(joined == group, "{who} joined another group");
            say(format!(
                "  {who} joins from its Welcome (the tree fetched through its provider)"
            ));
        }
        self.check_in_sync(&group, &[ALICE, BOB, CAROL]).await?;

        // Messages every way.
        for (who, others, text) in [
            (ALICE, [BOB, CAROL], "hello from a.example"),
            (BOB, [ALICE, CAROL], "hello from b.example"),
            (CAROL, [ALICE, BOB], "hello from c.example"),
        ] {
            self.send(who, &group, text).await?;
            self.expect_text(&others, text).await?;
        }

        // An update by Bob, relayed by b.example to the hub.
        let update = self
            .client(BOB)?
            .update(&group)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(BOB, DsEndpoint::GroupOperation, &update)
            .await?;
        self.client(BOB)?
            .merge_pending_commit(&group)
            .map_err(|e| anyhow!("{e}"))?;
        say(format!("{BOB} updates its keys"));
        self.expect_commit(&[ALICE, CAROL]).await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL]).await?;

        // c.example goes down; the conversation goes on; it comes back.
        self.stop("c.example")?;
        say("c.example stops");
        let texts = ["while c.example is down (1)", "while c.example is down (2)"];
        self.send(ALICE, &group, texts[0]).await?;
        self.expect_text(&[BOB], texts[0]).await?;
        self.send(BOB, &group, texts[1]).await?;
        self.expect_text(&[ALICE], texts[1]).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.restart("c.example").await?;
        say("c.example is back");
        for text in texts {
            self.expect_text(&[CAROL], text).await?;
        }

        // Alice removes Carol.
        let carol_leaf = self.clients[CAROL]
            .leaf_index(&group)
            .ok_or_else(|| anyhow!("Carol has no leaf"))?;
        let (remove, alice_leaf) = self
            .client(ALICE)?
            .remove(&group, &[carol_leaf])
            .map_err(|e| anyhow!("{e}"))?;
        let request = self
            .client(ALICE)?
            .sign_request(
                DSRequestBody::RemoveUsers(mimid_wire::RemoveUsersRequest {
                    group_update: remove,
                }),
                alice_leaf,
            )
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(ALICE, DsEndpoint::GroupOperation, &request)
            .await?;
        self.client(ALICE)?
            .merge_pending_commit(&group)
            .map_err(|e| anyhow!("{e}"))?;
        say(format!("{ALICE} removes {CAROL}"));
        self.expect_commit(&[BOB, CAROL]).await?;
        self.check_in_sync(&group, &[ALICE, BOB]).await?;
        self.send(ALICE, &group, "just the two of us").await?;
        self.expect_text(&[BOB], "just the two of us").await?;
        let left = self
            .node("c.example")?
            .service
            .store()
            .client_queue(CAROL, self.read[CAROL], 10)
            .await?;
        ensure!(
            left.is_empty(),
            "Carol still gets messages after her removal"
        );
        say(format!("  {CAROL} gets nothing more"));
        Ok(())
    }

    fn stop(&mut self, domain: &str) -> anyhow::Result<()> {
        let member = self
            .members
            .get_mut(domain)
            .ok_or_else(|| anyhow!("no provider {domain}"))?;
        member.node = None;
        Ok(())
    }

    async fn restart(&mut self, domain: &str) -> anyhow::Result<()> {
        let (port, roots, mode) = (self.port, self.roots.clone(), self.mode);
        let member = self
            .members
            .get_mut(domain)
            .ok_or_else(|| anyhow!("no provider {domain}"))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(member.ip, port)).await?;
        member.node = Some(member.start(listener, port, &roots, mode).await?);
        Ok(())
    }
}

impl Member {
    fn node(&self) -> anyhow::Result<&Node> {
        self.node
            .as_ref()
            .ok_or_else(|| anyhow!("{} is stopped", self.domain))
    }

    /// Starts the provider from its files (certificate, keys, store), as
    /// `mimid serve` does.
    async fn start(
        &self,
        listener: tokio::net::TcpListener,
        port: u16,
        roots: &Arc<rustls::RootCertStore>,
        mode: AuthMode,
    ) -> anyhow::Result<Node> {
        let keys = ProviderKeys::load(&[self.dir.join("provider.key")])?;
        let mut resolve = Vec::new();
        for (i, d) in DOMAINS.iter().enumerate() {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)), port);
            resolve.push((d.to_string(), addr));
            resolve.push((format!("ds.{d}"), addr));
        }
        let mut outbox = OutboxConfig::new(self.domain.clone());
        outbox.backoff_start = Duration::from_millis(100);
        outbox.backoff_max = Duration::from_secs(1);
        outbox.rescan = Duration::from_millis(500);
        Ok(Node::start(NodeSettings {
            domain: self.domain.clone(),
            listener,
            ds_authority: format!("ds.{}:{port}", self.domain),
            store_path: self.dir.join("mimid.db"),
            durability: Durability::Process,
            chain: tls::load_certs(&self.dir.join("cert.pem"))?,
            key: tls::load_key(&self.dir.join("key.pem"))?,
            roots: roots.clone(),
            keys,
            modes: PeerModes {
                default: mode,
                peers: HashMap::new(),
            },
            overrides: HashMap::<ProviderDomain, Authority>::new(),
            resolve,
            well_known_port: port,
            body_limit: mimid_wire::DEFAULT_BODY_LIMIT,
            limits: mimid_wire::Limits::default(),
            outbox,
            clock: Arc::new(SystemClock),
        })
        .await?)
    }
}

/// Three listeners on one port of 127.0.0.2, .3 and .4.
async fn bind_three() -> anyhow::Result<(u16, Vec<tokio::net::TcpListener>)> {
    for _ in 0..20 {
        let first = tokio::net::TcpListener::bind("127.0.0.2:0").await?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for ip in [3, 4] {
            match tokio::net::TcpListener::bind(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip)),
                port,
            ))
            .await
            {
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

fn now_secs() -> u64 {
    mimid_transport::Clock::now(&SystemClock)
}
