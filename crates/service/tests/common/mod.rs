//! Two ways to run the hub in tests, with one interface: the core alone
//! (state serialized and reloaded after every step, as a store would) and
//! the service on a real SQLite file.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use mimid_client::MimiClient;
use mimid_core::{
    Context, DsEndpoint, Hub, HubConfig, HubError, HubGroup, JoinerSnapshot, Origin, Slot, Write,
};
use mimid_service::{HubService, ServiceConfig, ServiceError, decode_recipients};
use mimid_store::{Durability, SqliteStore, Store};
use mimid_wire::*;

mod world;
pub use world::*;

/// The hub's client directory, as the service's store has it: its users
/// ([`LOCAL_CLIENTS`]) and their clients.
pub fn local_directory() -> mimid_core::Directory {
    let mut directory = mimid_core::Directory::new();
    for client in LOCAL_CLIENTS {
        let client: ClientId = client.parse().expect("a ClientID");
        directory.entry(client.user()).or_default().insert(client);
    }
    directory
}

/// The destinations the tests use; the hub is the first.
pub const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.example"];

/// The hub's own clients the tests use: in its client directory, so that
/// they get the messages of the hub's steps in their queues.
pub const LOCAL_CLIENTS: [&str; 5] = [
    "mimi://a.example/d/alice/desk",
    "mimi://a.example/d/alice/laptop",
    "mimi://a.example/d/alice/other",
    "mimi://a.example/d/alice/phone",
    "mimi://a.example/d/dan/desk",
];

/// One delivery job as a guest would receive it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub destination: String,
    pub recipients: Vec<String>,
    pub message: Vec<u8>,
}

impl Sent {
    pub fn is_welcome(&self) -> bool {
        WelcomeMessage::from_bytes(&self.message).is_ok()
    }
}

/// What an accepted request did.
#[derive(Debug)]
pub struct Effects {
    pub response: DSResponseBody,
    pub sent: Vec<Sent>,
    /// Distinct message bodies stored for the deliveries.
    pub messages_stored: usize,
    pub state_written: bool,
    pub deleted: bool,
    /// Epoch and number of added clients of a new joiner snapshot.
    pub snapshot: Option<(u64, usize)>,
}

impl Effects {
    pub fn to(&self, client: &str) -> Option<&Sent> {
        self.sent
            .iter()
            .find(|s| s.recipients.iter().any(|r| r == client))
    }
    pub fn delivered_to(&self, client: &str) -> Option<DeliverableMessage> {
        self.to(client)
            .map(|s| DeliverableMessage::from_bytes(&s.message).expect("deliverable"))
    }
    pub fn welcome_for(&self, client: &str) -> Option<WelcomeMessage> {
        self.sent
            .iter()
            .find(|s| s.is_welcome() && s.recipients.iter().any(|r| r == client))
            .map(|s| WelcomeMessage::from_bytes(&s.message).expect("welcome"))
    }
    /// (destination, recipients) of every delivery, sorted.
    pub fn routes(&self) -> Vec<(String, Vec<String>)> {
        let mut r: Vec<_> = self
            .sent
            .iter()
            .map(|s| {
                let mut recipients = s.recipients.clone();
                recipients.sort();
                (s.destination.clone(), recipients)
            })
            .collect();
        r.sort();
        r
    }
}

/// A hub the tests can drive.
pub trait Backend: Sized {
    fn with_config(config: HubConfig) -> Self;
    fn new(domain: &str) -> Self {
        Self::with_config(HubConfig::new(domain.parse().expect("domain")))
    }
    fn call(
        &mut self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        origin: Origin,
    ) -> Result<Effects, HubError>;
    /// The stored group state, if any.
    fn state(&mut self, group_id: &GroupId) -> Option<Vec<u8>>;
    /// Everything a refused request must leave unchanged.
    fn fingerprint(&mut self, group_id: &GroupId) -> String;

    fn op(&mut self, request: &DSRequest, origin: Origin) -> Result<Effects, HubError> {
        self.call(DsEndpoint::GroupOperation, request, origin)
    }
    fn group(&mut self, group_id: &GroupId) -> HubGroup {
        HubGroup::from_bytes(&self.state(group_id).expect("group exists")).expect("state loads")
    }
}

pub fn client(id: &str) -> MimiClient {
    MimiClient::new(id.parse().expect("client id")).expect("client")
}

pub fn provider(domain: &str) -> Origin {
    Origin::Provider(domain.parse().expect("domain"))
}

/// The request as a receiver sees it: encoded, then decoded, whose
/// refusals are answered like the hub's (6.2 steps 1 and 2).
fn round_trip(request: &DSRequest) -> Result<DSRequest, HubError> {
    Ok(DSRequest::decode_exact(
        &request.to_bytes().expect("encode"),
        &Limits::default(),
    )?)
}

/// The core alone; the state goes through its byte form between steps.
pub struct Memory {
    hub: Hub,
    state: Option<Vec<u8>>,
    reserved: Option<(u64, ProviderDomain)>,
    snapshots: HashMap<u64, JoinerSnapshot>,
    counter: u8,
}

impl Backend for Memory {
    fn with_config(config: HubConfig) -> Self {
        Memory {
            hub: Hub::new(config),
            state: None,
            reserved: None,
            snapshots: HashMap::new(),
            counter: 0,
        }
    }

    fn call(
        &mut self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        origin: Origin,
    ) -> Result<Effects, HubError> {
        let request = round_trip(request)?;
        self.counter = self.counter.wrapping_add(1);
        let ctx = Context {
            origin,
            now: 1_795_000_000,
            random: [self.counter; 16],
            verified: None,
            directory: Some(local_directory()),
        };
        let target = self.hub.target(endpoint, &request, &ctx)?;
        let snapshot = target
            .snapshot_epoch
            .and_then(|e| self.snapshots.get(&e).cloned());
        let mut slot = match (&self.state, &self.reserved) {
            (Some(bytes), _) => {
                Slot::Active(Box::new(HubGroup::from_bytes(bytes).expect("state loads")))
            }
            (None, Some((until, by))) => Slot::Reserved {
                until: *until,
                by: by.clone(),
            },
            (None, None) => Slot::Empty,
        };
        let outcome = self
            .hub
            .handle(endpoint, &request, &mut slot, snapshot.as_ref(), &ctx)?;
        let (state_written, deleted) = match &outcome.write {
            Write::None => (false, false),
            Write::Reserve { until, by } => {
                self.reserved = Some((*until, by.clone()));
                (true, false)
            }
            Write::Put(bytes) => {
                self.state = Some(bytes.clone());
                (true, false)
            }
            Write::Delete => {
                self.state = None;
                self.reserved = None;
                self.snapshots.clear();
                (true, true)
            }
        };
        if let Some(s) = &outcome.snapshot {
            self.snapshots.insert(s.epoch, s.clone());
        }
        let sent = outcome
            .deliveries
            .iter()
            .map(|d| Sent {
                destination: d.destination.to_string(),
                recipients: d.recipients.iter().map(|c| c.to_string()).collect(),
                message: outcome.messages[d.message].clone(),
            })
            .collect();
        Ok(Effects {
            response: outcome.response,
            sent,
            messages_stored: outcome.messages.len(),
            state_written,
            deleted,
            snapshot: outcome.snapshot.as_ref().map(|s| (s.epoch, s.added.len())),
        })
    }

    fn state(&mut self, _: &GroupId) -> Option<Vec<u8>> {
        self.state.clone()
    }

    fn fingerprint(&mut self, _: &GroupId) -> String {
        let mut epochs: Vec<_> = self.snapshots.keys().collect();
        epochs.sort();
        format!("{:?} {:?} {:?}", self.state, self.reserved, epochs)
    }
}

/// The service on a real SQLite database file.
pub struct Sqlite {
    rt: tokio::runtime::Runtime,
    svc: HubService<SqliteStore>,
    _dir: tempfile::TempDir,
    /// Jobs already seen, per destination.
    seen: BTreeMap<String, i64>,
    /// Position of the hub's own queues already seen.
    seen_local: u64,
}

impl Sqlite {
    fn jobs(&self) -> Vec<mimid_store::Job> {
        let mut all = Vec::new();
        for d in DOMAINS {
            all.extend(
                self.rt
                    .block_on(self.svc.store().pending_jobs(d, 100_000))
                    .expect("jobs"),
            );
        }
        all
    }

    /// The messages the hub's steps queued for its own clients after
    /// position `after`, as deliveries (one per message, in order).
    fn local(&self, after: u64) -> Vec<(u64, Sent)> {
        let mut by_position: BTreeMap<u64, Sent> = BTreeMap::new();
        for client in LOCAL_CLIENTS {
            let queued = self
                .rt
                .block_on(self.svc.store().client_queue(client, after, 100_000))
                .expect("queue");
            for q in queued {
                by_position
                    .entry(q.seq)
                    .or_insert_with(|| Sent {
                        destination: DOMAINS[0].to_string(),
                        recipients: Vec::new(),
                        message: q.message,
                    })
                    .recipients
                    .push(client.to_string());
            }
        }
        by_position.into_iter().collect()
    }

    fn snapshots(&self, group_id: &GroupId) -> Vec<(u64, usize)> {
        (0..32)
            .filter_map(|e| {
                self.rt
                    .block_on(self.svc.store().load_snapshot(&group_id.to_mls_bytes(), e))
                    .expect("snapshot")
                    .map(|s| {
                        (
                            e,
                            JoinerSnapshot::from_bytes(&s.data)
                                .expect("snapshot decodes")
                                .added
                                .len(),
                        )
                    })
            })
            .collect()
    }

    fn version(&self, group_id: &GroupId) -> Option<(u64, Vec<u8>)> {
        self.rt
            .block_on(self.svc.store().load_group(&group_id.to_mls_bytes()))
            .expect("load")
            .map(|g| (g.version, g.state))
    }
}

impl Backend for Sqlite {
    fn with_config(config: HubConfig) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = rt
            .block_on(SqliteStore::open(
                &dir.path().join("hub.db"),
                Durability::Process,
            ))
            .expect("store");
        for client in LOCAL_CLIENTS {
            let user = client.parse::<ClientId>().expect("a ClientID").user();
            rt.block_on(store.add_client(client.into(), user.to_string(), 0))
                .expect("directory");
        }
        let svc = HubService::new(Hub::new(config), store, ServiceConfig::default());
        Sqlite {
            rt,
            svc,
            _dir: dir,
            seen: BTreeMap::new(),
            seen_local: 0,
        }
    }

    fn call(
        &mut self,
        endpoint: DsEndpoint,
        request: &DSRequest,
        origin: Origin,
    ) -> Result<Effects, HubError> {
        let request = round_trip(request)?;
        let target_group = self
            .svc
            .hub()
            .target(
                endpoint,
                &request,
                &Context {
                    origin: origin.clone(),
                    now: 0,
                    random: [0; 16],
                    verified: None,
                    directory: None,
                },
            )
            .ok();
        let before = target_group
            .as_ref()
            .map(|t| (self.version(&t.group_id), self.snapshots(&t.group_id)));
        let response = match self
            .rt
            .block_on(self.svc.handle(endpoint, &request, origin))
        {
            Ok(r) => r,
            Err(ServiceError::Hub(e)) => return Err(e),
            Err(e) => panic!("store failed: {e}"),
        };
        // A reserved id is named by the response, not the request.
        let group_id = match (&response, target_group) {
            (DSResponseBody::GroupId(GroupIdField(g)), _) => g.clone(),
            (_, Some(t)) => t.group_id,
            (_, None) => panic!("no group"),
        };
        let (version_before, snapshots_before) = before.unwrap_or((None, Vec::new()));
        let version_after = self.version(&group_id);
        let new_jobs: Vec<_> = self
            .jobs()
            .into_iter()
            .filter(|j| {
                self.seen
                    .get(&j.destination)
                    .is_none_or(|&seen| j.id > seen)
            })
            .collect();
        for j in &new_jobs {
            let seen = self.seen.entry(j.destination.clone()).or_insert(0);
            *seen = (*seen).max(j.id);
        }
        let mut sent: Vec<Sent> = new_jobs
            .iter()
            .map(|j| Sent {
                destination: j.destination.clone(),
                recipients: decode_recipients(&j.recipients)
                    .expect("recipients")
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                message: DeliverMessage::decode_exact(&j.body, &Limits::default())
                    .expect("stored body")
                    .message
                    .as_bytes()
                    .to_vec(),
            })
            .collect();
        for (position, local) in self.local(self.seen_local) {
            self.seen_local = self.seen_local.max(position);
            sent.push(local);
        }
        let mut bodies: Vec<&[u8]> = sent.iter().map(|s| s.message.as_slice()).collect();
        bodies.sort();
        bodies.dedup();
        let messages_stored = bodies.len();
        let snapshot = self
            .snapshots(&group_id)
            .into_iter()
            .find(|s| !snapshots_before.contains(s));
        Ok(Effects {
            response,
            sent,
            messages_stored,
            state_written: version_after.as_ref().map(|v| v.0)
                != version_before.as_ref().map(|v| v.0),
            deleted: version_before.is_some() && version_after.is_none(),
            snapshot,
        })
    }

    fn state(&mut self, group_id: &GroupId) -> Option<Vec<u8>> {
        self.version(group_id)
            .map(|(_, state)| state)
            .filter(|s| !s.is_empty())
    }

    fn fingerprint(&mut self, group_id: &GroupId) -> String {
        let jobs: Vec<_> = self.jobs().into_iter().map(|j| j.id).collect();
        let local: Vec<_> = self.local(0).into_iter().map(|(p, _)| p).collect();
        format!(
            "{:?} {:?} {:?} {:?}",
            self.version(group_id),
            self.snapshots(group_id),
            jobs,
            local
        )
    }
}
