//! `mimid demo`: three providers on loopback, each its own domain,
//! certificate (from a throwaway CA), provider key and SQLite store, found
//! through their real well-known endpoints. Users' devices are OpenMLS
//! clients that talk to their own provider over its HTTPS client API only
//! (`docs/client-api.md`): they enrol with a secret the operator made,
//! publish KeyPackages, connect with users on other providers (each
//! provider asks for Privacy Pass tokens on the connection endpoints, which
//! the devices get from their own provider's issuer), and hold a
//! conversation across all three: a group hosted on a.example with members
//! on every provider, messages every way, an update, a new device added, a
//! new device joining by external commit, a provider that is down for a
//! while and catches up, removals. Every plaintext and every member's epoch
//! and tree hash is checked; any failed check is an error.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use mimid_client::MimiClient;
use mimid_client::api::{Decision, ProviderApi, QueuedMessage, SigningKey};
use mimid_store::Store;
use mimid_transport::auth::AuthMode;
use mimid_transport::loopback::{Loopback, LoopbackOptions};
use mimid_transport::node::Node;
use mimid_transport::server::client_api::invite;
use mimid_transport::{Clock as _, SystemClock};
use mimid_wire::{
    ClientId, ConnectionKeyPackageRequest, DSAuthData, DSRequest, DSRequestBody, DSResponseBody,
    DeleteGroupRequest, DeliverableMessage, ExternalCommitInformationRequest, GroupId,
    GroupIdField, GroupKind, KeyPackage, RemoveClientsRequest, RemoveUsersRequest, UserId,
    WelcomeMessage, Wire as _,
};

const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.example"];
const ALICE: &str = "mimi://a.example/d/alice/laptop";
const BOB: &str = "mimi://b.example/d/bob/phone";
const BOB_TABLET: &str = "mimi://b.example/d/bob/tablet";
const CAROL: &str = "mimi://c.example/d/carol/tablet";
const CAROL_PHONE: &str = "mimi://c.example/d/carol/phone";

/// How long a device waits for a message it expects.
const PATIENCE: Duration = Duration::from_secs(30);

/// One device: its MLS state, and its session with its own provider.
struct Device {
    mls: MimiClient,
    api: ProviderApi,
    /// Read from the queue but not yet handled, oldest first.
    unread: VecDeque<QueuedMessage>,
    /// The queue position read up to.
    read: u64,
}

struct Demo {
    federation: Loopback,
    http: reqwest::Client,
    devices: HashMap<&'static str, Device>,
}

fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

fn user_of(client: &str) -> anyhow::Result<UserId> {
    Ok(client.parse::<ClientId>()?.user())
}

/// Runs the demo in `dir` (a fresh directory); with `hold`, keeps the
/// providers running afterwards until interrupted.
pub async fn run(dir: &Path, mode: AuthMode, hold: bool) -> anyhow::Result<()> {
    let mut demo = Demo::start(dir, mode).await?;
    demo.conversation().await?;
    say("all checks passed");
    if hold {
        for node in demo.federation.nodes() {
            say(format!(
                "{}: https://{}  (CA: {})",
                node.domain,
                node.local_addr(),
                demo.federation.ca_path().display()
            ));
        }
        say("ready");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}

impl Demo {
    async fn start(dir: &Path, mode: AuthMode) -> anyhow::Result<Demo> {
        let options = LoopbackOptions {
            privacy_pass: true,
            ..LoopbackOptions::default()
        };
        let federation = Loopback::start_with(dir, &DOMAINS, mode, options).await?;
        say(format!(
            "three providers on loopback (127.0.0.2-4, port {}), provider authentication: {}",
            federation.port(),
            match mode {
                AuthMode::Signature => "signatures",
                AuthMode::Mtls => "mutual TLS",
                AuthMode::Both => "signatures and mutual TLS",
            }
        ));
        say(
            "each is a Privacy Pass issuer for its own clients and asks for a token on /connection_key_packages and /connection_request, accepting the others' tokens",
        );
        let http = federation.client_api_http()?;
        Ok(Demo {
            federation,
            http,
            devices: HashMap::new(),
        })
    }

    fn node(&self, domain: &str) -> anyhow::Result<&Node> {
        self.federation
            .node(domain)
            .ok_or_else(|| anyhow!("{domain} is not running"))
    }

    fn device(&mut self, id: &'static str) -> anyhow::Result<&mut Device> {
        self.devices
            .get_mut(id)
            .ok_or_else(|| anyhow!("no device {id}"))
    }

    fn mls(&mut self, id: &'static str) -> anyhow::Result<&mut MimiClient> {
        Ok(&mut self.device(id)?.mls)
    }

    fn api(&self, id: &'static str) -> anyhow::Result<&ProviderApi> {
        self.devices
            .get(id)
            .map(|d| &d.api)
            .ok_or_else(|| anyhow!("no device {id}"))
    }

    /// The operator of the device's provider adds its user (if new) and
    /// makes it an enrolment secret; the device enrols with it over HTTPS
    /// and publishes KeyPackages: connection and regular, one-time and
    /// last-resort.
    async fn enrol(&mut self, id: &'static str) -> anyhow::Result<()> {
        let client: ClientId = id.parse()?;
        let user = client.user();
        let domain = client.domain();
        let store = self.node(domain.as_str())?.service.store();
        let now = SystemClock.now();
        if !store.user_exists(user.as_str()).await? {
            store.add_user(user.to_string(), now).await?;
        }
        let secret = invite(store, &user, 3600, now).await?;
        let api = ProviderApi::enrol(
            self.http.clone(),
            &self.federation.client_api_base(domain.as_str()),
            domain.as_str(),
            &secret,
            &user,
            client.device(),
            SigningKey::generate()?,
        )
        .await
        .with_context(|| format!("{id} enrols"))?;
        ensure!(
            api.client_id() == &client,
            "{id} enrolled as {}",
            api.client_id()
        );
        let mls = MimiClient::new(client).map_err(|e| anyhow!("{e}"))?;
        let mut packages = Vec::new();
        for (connection, last_resort) in [
            (true, false),
            (true, true),
            (false, false),
            (false, false),
            (false, true),
        ] {
            packages.push(
                mls.key_package(connection, last_resort)
                    .map_err(|e| anyhow!("{e}"))?,
            );
        }
        api.publish_key_packages(&packages).await?;
        say(format!(
            "{id} enrols at {domain} with a one-time secret and publishes {} KeyPackages",
            packages.len()
        ));
        self.devices.insert(
            id,
            Device {
                mls,
                api,
                unread: VecDeque::new(),
                read: 0,
            },
        );
        Ok(())
    }

    /// A device's DS request, through its own provider's client API.
    async fn submit(
        &self,
        who: &'static str,
        request: &DSRequest,
    ) -> anyhow::Result<DSResponseBody> {
        self.api(who)?
            .submit(request)
            .await
            .map_err(|e| anyhow!("{who}'s request was refused: {e}"))
    }

    /// The next `n` messages of a device's queue, read through the client
    /// API (long polling) and acknowledged.
    async fn receive(&mut self, who: &'static str, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + PATIENCE;
        let device = self.device(who)?;
        while device.unread.len() < n {
            ensure!(
                Instant::now() < deadline,
                "{who} did not receive {n} messages within {} s",
                PATIENCE.as_secs()
            );
            let read = device.api.queue(device.read, 5).await?;
            for message in read.messages {
                device.read = message.seq;
                device.unread.push_back(message);
            }
        }
        let taken: Vec<QueuedMessage> = device.unread.drain(..n).collect();
        if let Some(last) = taken.last() {
            device.api.acknowledge(last.seq).await?;
        }
        Ok(taken.into_iter().map(|q| q.message).collect())
    }

    /// Receives one message for each of `who` and checks it is `plaintext`.
    async fn expect_text(&mut self, who: &[&'static str], plaintext: &str) -> anyhow::Result<()> {
        for &w in who {
            let message = self.receive(w, 1).await?.remove(0);
            let message = DeliverableMessage::from_bytes(&message)?;
            let got = self
                .mls(w)?
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
            self.mls(w)?
                .process(&message)
                .map_err(|e| anyhow!("{w}: {e}"))?;
        }
        Ok(())
    }

    async fn send(&mut self, who: &'static str, group: &GroupId, text: &str) -> anyhow::Result<()> {
        let request = self
            .mls(who)?
            .send_message(group, text.as_bytes())
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(who, &request).await?;
        say(format!("{who} sends {text:?}"));
        Ok(())
    }

    /// Every listed device's epoch and tree hash equal the hub's.
    async fn check_in_sync(&self, group: &GroupId, who: &[&'static str]) -> anyhow::Result<()> {
        let hub = self
            .node("a.example")?
            .service
            .group_epoch(group)
            .await?
            .ok_or_else(|| anyhow!("the hub has no group"))?;
        for w in who {
            let mine = self
                .devices
                .get(w)
                .and_then(|d| d.mls.epoch_and_tree_hash(group))
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

    /// Submits a device's commit and merges it.
    async fn commit(
        &mut self,
        who: &'static str,
        group: &GroupId,
        request: &DSRequest,
    ) -> anyhow::Result<()> {
        self.submit(who, request).await?;
        self.mls(who)?
            .merge_pending_commit(group)
            .map_err(|e| anyhow!("{e}"))
    }

    /// A device joins from the Welcome in its queue, with the tree of the
    /// epoch it was added in, fetched through its own provider.
    async fn join(
        &mut self,
        who: &'static str,
        group: &GroupId,
        key_package: &KeyPackage,
        epoch: u64,
    ) -> anyhow::Result<()> {
        let welcome = self.receive(who, 1).await?.remove(0);
        let welcome = WelcomeMessage::from_bytes(&welcome)
            .with_context(|| format!("{who}'s next message is not a Welcome"))?;
        let info = self
            .mls(who)?
            .welcome_information_request(group, epoch, key_package)
            .map_err(|e| anyhow!("{e}"))?;
        let DSResponseBody::WelcomeInfo(tree) = self.submit(who, &info).await? else {
            bail!("no welcome information for {who}")
        };
        let joined = self
            .mls(who)?
            .join(&welcome, &tree)
            .map_err(|e| anyhow!("{e}"))?;
        ensure!(&joined == group, "{who} joined another group");
        say(format!(
            "  {who} joins from its Welcome (the tree fetched through its provider)"
        ));
        Ok(())
    }

    fn epoch(&self, who: &str, group: &GroupId) -> u64 {
        self.devices
            .get(who)
            .and_then(|d| d.mls.epoch_and_tree_hash(group))
            .map_or(0, |(e, _)| e)
    }

    fn leaf(&self, who: &str, group: &GroupId) -> anyhow::Result<u32> {
        self.devices
            .get(who)
            .and_then(|d| d.mls.leaf_index(group))
            .ok_or_else(|| anyhow!("{who} has no leaf"))
    }

    /// `ds_external_commit_information` for `who`.
    fn eci(&self, who: &'static str, group: &GroupId) -> anyhow::Result<DSRequest> {
        Ok(DSRequest {
            version: 1,
            request_body: DSRequestBody::ExternalCommitInformation(
                ExternalCommitInformationRequest {
                    group_id: GroupIdField(group.clone()),
                    requester: who.parse()?,
                },
            ),
            authentication_data: DSAuthData::Anonymous,
        })
    }

    /// A new group on the creator's provider (a.example here).
    async fn new_group(&mut self, who: &'static str, kind: GroupKind) -> anyhow::Result<GroupId> {
        let ask = DSRequest {
            version: 1,
            request_body: DSRequestBody::RequestGroupId,
            authentication_data: DSAuthData::Anonymous,
        };
        let DSResponseBody::GroupId(GroupIdField(group)) = self.submit(who, &ask).await? else {
            bail!("no group id")
        };
        let create = self
            .mls(who)?
            .create_group(&group, kind)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(who, &create).await?;
        Ok(group)
    }

    /// `who` asks `device`'s user to connect: a connection group with the
    /// user's clients (from their connection KeyPackages), whose Welcome
    /// goes with the request; `device` accepts and joins the group.
    async fn connect(&mut self, who: &'static str, device: &'static str) -> anyhow::Result<()> {
        let target = user_of(device)?;
        let asker = user_of(who)?;
        // The target's provider asks for a Privacy Pass token: a request
        // without one is refused with its challenge.
        let request = ConnectionKeyPackageRequest {
            version: mimid_wire::PROTOCOL_VERSION,
            requester: asker.clone(),
            target: target.clone(),
        }
        .to_bytes()?;
        let untokened = self
            .node(asker.domain().as_str())?
            .client
            .post(&target.domain(), "/connection_key_packages", request)
            .await?;
        ensure!(
            untokened.status == 401 && untokened.challenge.is_some(),
            "{} served KeyPackages without a Privacy Pass token (HTTP {})",
            target.domain(),
            untokened.status
        );
        let kps = self
            .api(who)?
            .fetch_key_packages(&target, true, &[])
            .await?;
        let group = self.new_group(who, GroupKind::Connection).await?;
        let add = self
            .mls(who)?
            .add(&group, &kps, false)
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(who, &group, &add).await?;
        let DSRequestBody::AddUsers(users) = &add.request_body else {
            bail!("not add_users")
        };
        let welcome = users
            .welcome_messages
            .first()
            .ok_or_else(|| anyhow!("no Welcome"))?
            .as_bytes()
            .to_vec();
        let epoch = self.epoch(who, &group);
        self.api(who)?
            .connect(&target, &group.to_mls_bytes(), epoch, &welcome)
            .await?;
        say(format!(
            "{who} asks {target} to connect (a connection group on a.example, {} KeyPackage(s) fetched through a.example)",
            kps.len()
        ));
        say(format!(
            "  {} wants a Privacy Pass token for both (401 without one): {who} got each from a.example, blinded",
            target.domain()
        ));
        let requests = self.api(device)?.connection_requests().await?;
        let asked = asker;
        let request = requests
            .iter()
            .find(|r| r.sender_user == asked)
            .ok_or_else(|| anyhow!("{device} sees no connection request from {asked}"))?;
        ensure!(request.welcome == welcome, "the request lost its Welcome");
        self.api(device)?
            .settle_connection_request(request.id, Decision::Accept)
            .await?;
        say(format!("  {device} sees the request and accepts it"));
        let kp = kps
            .iter()
            .find(|kp| kp_owner(kp).as_deref() == Some(device))
            .ok_or_else(|| anyhow!("no KeyPackage of {device}"))?;
        self.join(device, &group, kp, epoch).await?;
        self.check_in_sync(&group, &[who, device]).await?;
        Ok(())
    }

    async fn conversation(&mut self) -> anyhow::Result<()> {
        for device in [ALICE, BOB, CAROL] {
            self.enrol(device).await?;
        }

        // Connections: Alice with Bob and with Carol, across providers.
        self.connect(ALICE, BOB).await?;
        self.connect(ALICE, CAROL).await?;

        // A group on a.example.
        let group = self.new_group(ALICE, GroupKind::Regular).await?;
        say(format!("{ALICE} creates a group hosted on a.example"));

        // ds_add_users: Bob and Carol, with the regular KeyPackages their
        // providers serve to a connection.
        let mut kps = Vec::new();
        for device in [BOB, CAROL] {
            let target = user_of(device)?;
            kps.extend(
                self.api(ALICE)?
                    .fetch_key_packages(&target, false, &[])
                    .await?,
            );
        }
        let add = self
            .mls(ALICE)?
            .add(&group, &kps, false)
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(ALICE, &group, &add).await?;
        say(format!("{ALICE} adds {BOB} and {CAROL}"));
        let epoch = self.epoch(ALICE, &group);
        for device in [BOB, CAROL] {
            let kp = kps
                .iter()
                .find(|kp| kp_owner(kp).as_deref() == Some(device))
                .ok_or_else(|| anyhow!("no KeyPackage of {device}"))?;
            self.join(device, &group, kp, epoch).await?;
        }
        self.check_in_sync(&group, &[ALICE, BOB, CAROL]).await?;

        // ds_send_message, every way.
        for (who, others, text) in [
            (ALICE, [BOB, CAROL], "hello from a.example"),
            (BOB, [ALICE, CAROL], "hello from b.example"),
            (CAROL, [ALICE, BOB], "hello from c.example"),
        ] {
            self.send(who, &group, text).await?;
            self.expect_text(&others, text).await?;
        }

        // ds_update_client, relayed by b.example.
        let update = self.mls(BOB)?.update(&group).map_err(|e| anyhow!("{e}"))?;
        self.commit(BOB, &group, &update).await?;
        say(format!("{BOB} updates its keys"));
        self.expect_commit(&[ALICE, CAROL]).await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL]).await?;

        // ds_add_clients: Bob's new tablet enrols, and his phone adds it
        // with the KeyPackage it fetches from b.example.
        self.enrol(BOB_TABLET).await?;
        let tablet: ClientId = BOB_TABLET.parse()?;
        let kps = self
            .api(BOB)?
            .fetch_key_packages(&tablet.user(), false, std::slice::from_ref(&tablet))
            .await?;
        let add = self
            .mls(BOB)?
            .add(&group, &kps, true)
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(BOB, &group, &add).await?;
        say(format!("{BOB} adds its new device {BOB_TABLET}"));
        self.expect_commit(&[ALICE, CAROL]).await?;
        let epoch = self.epoch(BOB, &group);
        let kp = kps.first().ok_or_else(|| anyhow!("no KeyPackage"))?;
        self.join(BOB_TABLET, &group, kp, epoch).await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL, BOB_TABLET])
            .await?;

        // ds_external_commit_information and ds_external_join: Carol's new
        // phone enrols and joins by external commit, through c.example.
        self.enrol(CAROL_PHONE).await?;
        let ask = self.eci(CAROL_PHONE, &group)?;
        let DSResponseBody::ExternalCommitInfo(info) = self.submit(CAROL_PHONE, &ask).await? else {
            bail!("no external commit information")
        };
        let join = self
            .mls(CAROL_PHONE)?
            .external_join(&info)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(CAROL_PHONE, &join).await?;
        say(format!("{CAROL_PHONE} joins by external commit"));
        self.expect_commit(&[ALICE, BOB, CAROL, BOB_TABLET]).await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL, BOB_TABLET, CAROL_PHONE])
            .await?;
        self.send(CAROL_PHONE, &group, "hello from Carol's phone")
            .await?;
        self.expect_text(&[ALICE, BOB, CAROL, BOB_TABLET], "hello from Carol's phone")
            .await?;

        // ds_remove_clients: Bob removes his tablet (which still gets the
        // commit that removes it).
        let tablet_leaf = self.leaf(BOB_TABLET, &group)?;
        let (remove, sender) = self
            .mls(BOB)?
            .remove(&group, &[tablet_leaf])
            .map_err(|e| anyhow!("{e}"))?;
        let request = self
            .mls(BOB)?
            .sign_request(
                DSRequestBody::RemoveClients(RemoveClientsRequest {
                    group_update: remove,
                }),
                sender,
            )
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(BOB, &group, &request).await?;
        say(format!("{BOB} removes {BOB_TABLET}"));
        self.expect_commit(&[ALICE, CAROL, CAROL_PHONE, BOB_TABLET])
            .await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL, CAROL_PHONE])
            .await?;

        // ds_self_remove_client: Carol's phone leaves; Alice's next commit
        // includes its proposal.
        let leave = self
            .mls(CAROL_PHONE)?
            .self_remove(&group)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(CAROL_PHONE, &leave).await?;
        say(format!("{CAROL_PHONE} asks to leave"));
        self.expect_commit(&[ALICE, BOB, CAROL]).await?;
        let update = self
            .mls(ALICE)?
            .update(&group)
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(ALICE, &group, &update).await?;
        say(format!("{ALICE} commits, removing {CAROL_PHONE}"));
        self.expect_commit(&[BOB, CAROL, CAROL_PHONE]).await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL]).await?;

        // c.example goes down; the conversation goes on; it comes back and
        // its device reads what it missed.
        self.federation.stop("c.example");
        say("c.example stops");
        let texts = ["while c.example is down (1)", "while c.example is down (2)"];
        self.send(ALICE, &group, texts[0]).await?;
        self.expect_text(&[BOB], texts[0]).await?;
        self.send(BOB, &group, texts[1]).await?;
        self.expect_text(&[ALICE], texts[1]).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.federation.restart("c.example").await?;
        say("c.example is back");
        for text in texts {
            self.expect_text(&[CAROL], text).await?;
        }

        // Carol's tablet loses its copy of the group and resyncs by
        // external commit (its old leaf removed in the same commit).
        let eci = self.eci(CAROL, &group)?;
        let DSResponseBody::ExternalCommitInfo(info) = self.submit(CAROL, &eci).await? else {
            bail!("no external commit information")
        };
        let resync = self
            .mls(CAROL)?
            .external_join(&info)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(CAROL, &resync).await?;
        say(format!(
            "{CAROL} lost its group state and resyncs by external commit"
        ));
        self.expect_commit(&[ALICE, BOB]).await?;
        // Its old leaf, the same client, was sent the commit that removed it.
        let own = self.receive(CAROL, 1).await?.remove(0);
        ensure!(
            DeliverableMessage::from_bytes(&own)?.as_bytes() == resync_commit(&resync)?,
            "{CAROL} got something else than its own resync commit"
        );
        self.check_in_sync(&group, &[ALICE, BOB, CAROL]).await?;

        // ds_remove_users: Alice removes Carol.
        let carol_leaf = self.leaf(CAROL, &group)?;
        let (remove, sender) = self
            .mls(ALICE)?
            .remove(&group, &[carol_leaf])
            .map_err(|e| anyhow!("{e}"))?;
        let request = self
            .mls(ALICE)?
            .sign_request(
                DSRequestBody::RemoveUsers(RemoveUsersRequest {
                    group_update: remove,
                }),
                sender,
            )
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(ALICE, &group, &request).await?;
        say(format!("{ALICE} removes {CAROL}"));
        self.expect_commit(&[BOB, CAROL]).await?;
        self.check_in_sync(&group, &[ALICE, BOB]).await?;
        self.send(ALICE, &group, "just the two of us").await?;
        self.expect_text(&[BOB], "just the two of us").await?;
        for gone in [CAROL, CAROL_PHONE, BOB_TABLET] {
            let device = self.device(gone)?;
            let left = device.api.queue(device.read, 0).await?;
            ensure!(
                left.messages.is_empty() && device.unread.is_empty(),
                "{gone} still gets messages after its removal"
            );
        }
        say("  the removed devices get nothing more");

        // ds_delete_group: Alice removes Bob and the group goes.
        let bob_leaf = self.leaf(BOB, &group)?;
        let (remove, sender) = self
            .mls(ALICE)?
            .remove(&group, &[bob_leaf])
            .map_err(|e| anyhow!("{e}"))?;
        let request = self
            .mls(ALICE)?
            .sign_request(
                DSRequestBody::DeleteGroup(DeleteGroupRequest {
                    group_update: remove,
                }),
                sender,
            )
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(ALICE, &group, &request).await?;
        say(format!("{ALICE} deletes the group"));
        self.expect_commit(&[BOB]).await?;
        let late = self
            .mls(ALICE)?
            .send_message(&group, b"anyone?")
            .map_err(|e| anyhow!("{e}"))?;
        match self.submit(ALICE, &late).await {
            Err(e) if e.to_string().contains("unknown_group") => {
                say("  the hub no longer knows the group")
            }
            other => bail!("a message to the deleted group got {other:?}"),
        }
        Ok(())
    }
}

/// The commit of an external join request.
fn resync_commit(request: &DSRequest) -> anyhow::Result<&[u8]> {
    match &request.request_body {
        DSRequestBody::ExternalJoin(join) => Ok(join.group_update.commit.as_bytes()),
        _ => bail!("not an external join"),
    }
}

/// The ClientID a KeyPackage is of.
fn kp_owner(kp: &KeyPackage) -> Option<String> {
    mimid_core::people::owner_of(kp)
        .ok()
        .map(|c| c.as_str().to_owned())
}
