//! Workloads shared by the benchmarks: real MLS groups built with
//! `mimid-client`, so that every benchmark measures real messages.

/// The allocator of the `mimid` binary, so that benchmarks measure what
/// runs in production (raw baselines in the same process use it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mimid_client::{ClientError, MimiClient};
use mimid_wire::{ClientId, DSRequest, GroupId, GroupKind, ProviderDomain};

fn client_id(i: usize, providers: usize) -> Result<ClientId, ClientError> {
    format!("mimi://p{}.example/d/user{i}/dev", i % providers.max(1))
        .parse()
        .map_err(|e: mimid_wire::IdentifierError| ClientError::Mls(e.0))
}

/// A group whose clients are spread over `providers` domains
/// (`p0.example` hosts it), seen from its creator.
pub struct BenchGroup {
    pub creator: MimiClient,
    pub group_id: GroupId,
    providers: usize,
    /// The `ds_add_users` request that added everyone but the creator.
    pub add_request: Option<DSRequest>,
}

impl BenchGroup {
    /// The creator alone; the group is not created yet.
    pub fn empty(providers: usize) -> Result<Self, ClientError> {
        let hub: ProviderDomain = "p0.example"
            .parse()
            .map_err(|e: mimid_wire::IdentifierError| ClientError::Mls(e.0))?;
        Ok(BenchGroup {
            creator: MimiClient::new(client_id(0, providers)?)?,
            group_id: GroupId {
                hub_domain: hub,
                local_id: [7; 16],
            },
            providers,
            add_request: None,
        })
    }

    /// A created group of `members` clients (all adds merged by the creator).
    pub fn new(members: usize, providers: usize) -> Result<Self, ClientError> {
        let mut group = Self::empty(providers)?;
        group
            .creator
            .create_group(&group.group_id, GroupKind::Regular)?;
        if members > 1 {
            let add = group.add_members(members)?;
            group.creator.merge_pending_commit(&group.group_id)?;
            group.add_request = Some(add);
        }
        Ok(group)
    }

    /// Stages the creator's `ds_add_users` of clients 1..`members`.
    pub fn add_members(&mut self, members: usize) -> Result<DSRequest, ClientError> {
        let key_packages = (1..members)
            .map(|i| MimiClient::new(client_id(i, self.providers)?)?.key_package(false, false))
            .collect::<Result<Vec<_>, _>>()?;
        self.creator.add(&self.group_id, &key_packages, false)
    }

    /// A `ds_update_client` request (commit with a fresh path), left pending.
    pub fn update_request(&mut self) -> Result<DSRequest, ClientError> {
        let request = self.creator.update(&self.group_id)?;
        self.creator.clear_pending_commit(&self.group_id)?;
        Ok(request)
    }

    /// `count` successive `ds_update_client` requests, each for the epoch
    /// the previous one leads to (the creator merges each).
    pub fn update_chain(&mut self, count: usize) -> Result<Vec<DSRequest>, ClientError> {
        (0..count)
            .map(|_| {
                let request = self.creator.update(&self.group_id)?;
                self.creator.merge_pending_commit(&self.group_id)?;
                Ok(request)
            })
            .collect()
    }

    /// A `ds_send_message` request with `len` bytes of plaintext.
    pub fn message_request(&mut self, len: usize) -> Result<DSRequest, ClientError> {
        self.creator.send_message(&self.group_id, &vec![0x61; len])
    }
}

/// A group of `members` hosted by a core [`mimid_core::Hub`]: the hub's
/// state after creation and the add of everyone (epoch 1), and the creator.
pub struct HubFixture {
    pub hub: mimid_core::Hub,
    pub state: Vec<u8>,
    pub group: BenchGroup,
}

impl HubFixture {
    pub fn new(members: usize, providers: usize) -> Result<Self, String> {
        use mimid_core::{Context, DsEndpoint, Hub, HubConfig, Origin, Slot, Write};
        let mut group = BenchGroup::empty(providers).map_err(|e| e.to_string())?;
        let hub = Hub::new(HubConfig::new(group.group_id.hub_domain.clone()));
        let ctx = Context {
            origin: Origin::Local,
            now: now(),
            random: [1; 16],
            verified: None,
            directory: None,
        };
        let mut slot = Slot::Reserved {
            until: u64::MAX,
            by: group.group_id.hub_domain.clone(),
        };
        let create = group
            .creator
            .create_group(&group.group_id, GroupKind::Regular)
            .map_err(|e| e.to_string())?;
        hub.handle(DsEndpoint::GroupOperation, &create, &mut slot, None, &ctx)
            .map_err(|e| e.to_string())?;
        let add = group.add_members(members).map_err(|e| e.to_string())?;
        // The hub's own users are added with every client its directory
        // has (`docs/protocol.md` 6.3): the one device each has here.
        let mut directory = mimid_core::Directory::new();
        for i in 1..members {
            let client = client_id(i, group.providers).map_err(|e| e.to_string())?;
            if client.domain() == group.group_id.hub_domain {
                directory.entry(client.user()).or_default().insert(client);
            }
        }
        let ctx = Context {
            directory: Some(directory),
            ..ctx
        };
        let outcome = hub
            .handle(DsEndpoint::GroupOperation, &add, &mut slot, None, &ctx)
            .map_err(|e| e.to_string())?;
        group
            .creator
            .merge_pending_commit(&group.group_id)
            .map_err(|e| e.to_string())?;
        let Write::Put(state) = outcome.write else {
            return Err("add wrote no state".into());
        };
        Ok(HubFixture { hub, state, group })
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This process's peak and current resident memory in KiB (`VmHWM`,
/// `VmRSS` from /proc/self/status).
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time (user + system) this process has used, in seconds.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the file, 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// A store step that only writes `state` for `group_id`, expecting the
/// stored version `expected` (`None`: a new group).
pub fn put_state(group_id: &GroupId, state: Vec<u8>, expected: Option<u64>) -> mimid_store::Step {
    mimid_store::Step {
        group_id: group_id.to_mls_bytes(),
        expected_version: expected,
        write: mimid_store::GroupWrite::Put {
            state,
            reserved_until: None,
        },
        snapshot: None,
        prune_snapshots_before: None,
        messages: Vec::new(),
        jobs: Vec::new(),
        local: Vec::new(),
        remember: None,
        forget_digests: None,
        now: now(),
    }
}

/// A hub service on a SQLite file in `dir`, holding the fixture's group at
/// version 1.
pub async fn seeded_service(
    fx: &HubFixture,
    durability: mimid_store::Durability,
    dir: &std::path::Path,
    cache_groups: std::num::NonZeroUsize,
) -> Result<mimid_service::HubService<mimid_store::SqliteStore>, String> {
    let store = mimid_store::SqliteStore::open(&dir.join("hub.db"), durability)
        .await
        .map_err(|e| e.to_string())?;
    seeded_service_on(fx, store, true, cache_groups).await
}

/// A hub service on `store`, holding the fixture's group at version 1
/// (stored now if `seed`, else by an earlier service on the same
/// database).
pub async fn seeded_service_on<S: mimid_store::Store>(
    fx: &HubFixture,
    store: S,
    seed: bool,
    cache_groups: std::num::NonZeroUsize,
) -> Result<mimid_service::HubService<S>, String> {
    if seed {
        store
            .commit(put_state(&fx.group.group_id, fx.state.clone(), None))
            .await
            .map_err(|e| e.to_string())?;
    }
    let hub = mimid_core::Hub::new(mimid_core::HubConfig::new(
        fx.group.group_id.hub_domain.clone(),
    ));
    Ok(mimid_service::HubService::new(
        hub,
        store,
        mimid_service::ServiceConfig {
            cache_groups,
            ..Default::default()
        },
    ))
}
