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
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use mimid_client::MimiClient;
use mimid_core::DsEndpoint;
use mimid_store::Store;
use mimid_transport::auth::AuthMode;
use mimid_transport::loopback::Loopback;
use mimid_transport::node::Node;
use mimid_transport::{Clock as _, SystemClock};
use mimid_wire::{
    DSAuthData, DSRequest, DSRequestBody, DSResponseBody, DeleteGroupRequest, DeliverableMessage,
    ExternalCommitInformationRequest, GroupId, GroupIdField, GroupKind, RemoveClientsRequest,
    RemoveUsersRequest, WelcomeMessage,
};

const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.example"];
const ALICE: &str = "mimi://a.example/d/alice/laptop";
const BOB: &str = "mimi://b.example/d/bob/phone";
const BOB_TABLET: &str = "mimi://b.example/d/bob/tablet";
const CAROL: &str = "mimi://c.example/d/carol/tablet";
const CAROL_PHONE: &str = "mimi://c.example/d/carol/phone";
const CLIENTS: [&str; 5] = [ALICE, BOB, BOB_TABLET, CAROL, CAROL_PHONE];

struct Demo {
    federation: Loopback,
    clients: HashMap<&'static str, MimiClient>,
    /// The last queue position each client has read.
    read: HashMap<&'static str, u64>,
}

fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

fn domain_of(client: &str) -> anyhow::Result<String> {
    Ok(client.parse::<mimid_wire::ClientId>()?.domain().to_string())
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
        let federation = Loopback::start(dir, &DOMAINS, mode).await?;
        say(format!(
            "three providers on loopback (127.0.0.2-4, port {}), provider authentication: {}",
            federation.port(),
            match mode {
                AuthMode::Signature => "signatures",
                AuthMode::Mtls => "mutual TLS",
                AuthMode::Both => "signatures and mutual TLS",
            }
        ));
        let mut clients = HashMap::new();
        for id in CLIENTS {
            let client = MimiClient::new(id.parse()?).map_err(|e| anyhow!("{e}"))?;
            let node = federation
                .node(&domain_of(id)?)
                .ok_or_else(|| anyhow!("no provider for {id}"))?;
            node.service
                .store()
                .add_client(
                    id.to_string(),
                    client.id().user().to_string(),
                    SystemClock.now(),
                )
                .await?;
            clients.insert(id, client);
        }
        Ok(Demo {
            federation,
            clients,
            read: HashMap::new(),
        })
    }

    fn node(&self, domain: &str) -> anyhow::Result<&Node> {
        self.federation
            .node(domain)
            .ok_or_else(|| anyhow!("{domain} is not running"))
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
        let domain = domain_of(who)?;
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

    /// Submits a client's request and, for a commit, merges it.
    async fn commit(
        &mut self,
        who: &'static str,
        group: &GroupId,
        request: &DSRequest,
    ) -> anyhow::Result<()> {
        self.submit(who, DsEndpoint::GroupOperation, request)
            .await?;
        self.client(who)?
            .merge_pending_commit(group)
            .map_err(|e| anyhow!("{e}"))
    }

    /// A client joins from the Welcome in its queue, with the tree of the
    /// epoch it was added in, fetched through its own provider.
    async fn join(
        &mut self,
        who: &'static str,
        group: &GroupId,
        key_package: &mimid_wire::KeyPackage,
        epoch: u64,
    ) -> anyhow::Result<()> {
        let welcome = self.receive(who, 1).await?.remove(0);
        let welcome = WelcomeMessage::from_bytes(&welcome)
            .with_context(|| format!("{who}'s first message is not a Welcome"))?;
        let info = self
            .client(who)?
            .welcome_information_request(group, epoch, key_package)
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
        ensure!(&joined == group, "{who} joined another group");
        say(format!(
            "  {who} joins from its Welcome (the tree fetched through its provider)"
        ));
        Ok(())
    }

    fn epoch(&self, who: &str, group: &GroupId) -> u64 {
        self.clients[who]
            .epoch_and_tree_hash(group)
            .map_or(0, |(e, _)| e)
    }

    fn key_package(&mut self, who: &'static str) -> anyhow::Result<mimid_wire::KeyPackage> {
        self.client(who)?
            .key_package(false, false)
            .map_err(|e| anyhow!("{e}"))
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

        // ds_add_users: Bob and Carol, on the other providers.
        let bob_kp = self.key_package(BOB)?;
        let carol_kp = self.key_package(CAROL)?;
        let add = self
            .client(ALICE)?
            .add(&group, &[bob_kp.clone(), carol_kp.clone()], false)
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(ALICE, &group, &add).await?;
        say(format!("{ALICE} adds {BOB} and {CAROL}"));
        let epoch = self.epoch(ALICE, &group);
        self.join(BOB, &group, &bob_kp, epoch).await?;
        self.join(CAROL, &group, &carol_kp, epoch).await?;
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
        let update = self
            .client(BOB)?
            .update(&group)
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(BOB, &group, &update).await?;
        say(format!("{BOB} updates its keys"));
        self.expect_commit(&[ALICE, CAROL]).await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL]).await?;

        // ds_add_clients: Bob adds his tablet.
        let tablet_kp = self.key_package(BOB_TABLET)?;
        let add = self
            .client(BOB)?
            .add(&group, std::slice::from_ref(&tablet_kp), true)
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(BOB, &group, &add).await?;
        say(format!("{BOB} adds its new device {BOB_TABLET}"));
        self.expect_commit(&[ALICE, CAROL]).await?;
        let epoch = self.epoch(BOB, &group);
        self.join(BOB_TABLET, &group, &tablet_kp, epoch).await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL, BOB_TABLET])
            .await?;

        // ds_external_commit_information and ds_external_join: Carol's
        // phone joins by external commit, through c.example.
        let ask = DSRequest {
            version: 1,
            request_body: DSRequestBody::ExternalCommitInformation(
                ExternalCommitInformationRequest {
                    group_id: GroupIdField(group.clone()),
                    requester: CAROL_PHONE.parse()?,
                },
            ),
            authentication_data: DSAuthData::Anonymous,
        };
        let DSResponseBody::ExternalCommitInfo(info) = self
            .submit(CAROL_PHONE, DsEndpoint::ExternalCommitInformation, &ask)
            .await?
        else {
            bail!("no external commit information")
        };
        let join = self
            .client(CAROL_PHONE)?
            .external_join(&info)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(CAROL_PHONE, DsEndpoint::GroupOperation, &join)
            .await?;
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
        let tablet_leaf = self.clients[BOB_TABLET]
            .leaf_index(&group)
            .ok_or_else(|| anyhow!("the tablet has no leaf"))?;
        let (remove, sender) = self
            .client(BOB)?
            .remove(&group, &[tablet_leaf])
            .map_err(|e| anyhow!("{e}"))?;
        let request = self
            .client(BOB)?
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
            .client(CAROL_PHONE)?
            .self_remove(&group)
            .map_err(|e| anyhow!("{e}"))?;
        self.submit(CAROL_PHONE, DsEndpoint::GroupOperation, &leave)
            .await?;
        say(format!("{CAROL_PHONE} asks to leave"));
        self.expect_commit(&[ALICE, BOB, CAROL]).await?;
        let update = self
            .client(ALICE)?
            .update(&group)
            .map_err(|e| anyhow!("{e}"))?;
        self.commit(ALICE, &group, &update).await?;
        say(format!("{ALICE} commits, removing {CAROL_PHONE}"));
        self.expect_commit(&[BOB, CAROL, CAROL_PHONE]).await?;
        self.check_in_sync(&group, &[ALICE, BOB, CAROL]).await?;

        // c.example goes down; the conversation goes on; it comes back.
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

        // ds_remove_users: Alice removes Carol.
        let carol_leaf = self.clients[CAROL]
            .leaf_index(&group)
            .ok_or_else(|| anyhow!("Carol has no leaf"))?;
        let (remove, sender) = self
            .client(ALICE)?
            .remove(&group, &[carol_leaf])
            .map_err(|e| anyhow!("{e}"))?;
        let request = self
            .client(ALICE)?
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
            let store = self.node(&domain_of(gone)?)?.service.store();
            let left = store.client_queue(gone, self.read[gone], 10).await?;
            ensure!(
                left.is_empty(),
                "{gone} still gets messages after its removal"
            );
        }
        say("  the removed clients get nothing more");

        // ds_delete_group: Alice removes Bob and the group goes.
        let bob_leaf = self.clients[BOB]
            .leaf_index(&group)
            .ok_or_else(|| anyhow!("Bob has no leaf"))?;
        let (remove, sender) = self
            .client(ALICE)?
            .remove(&group, &[bob_leaf])
            .map_err(|e| anyhow!("{e}"))?;
        let request = self
            .client(ALICE)?
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
            .client(ALICE)?
            .send_message(&group, b"anyone?")
            .map_err(|e| anyhow!("{e}"))?;
        match self.submit(ALICE, DsEndpoint::GroupOperation, &late).await {
            Err(e) if e.to_string().contains("unknown_group") => {
                say("  the hub no longer knows the group")
            }
            other => bail!("a message to the deleted group got {other:?}"),
        }
        Ok(())
    }
}
