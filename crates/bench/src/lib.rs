//! Workloads shared by the benchmarks: real MLS groups built with
//! `mimid-client`, so that every benchmark measures real messages.

use mimid_client::{ClientError, MimiClient};
use mimid_wire::{ClientId, DSRequest, GroupId, GroupKind, ProviderDomain};

/// A group of `members` clients spread over `providers` domains, created by
/// the first client, with every add merged on the creator's side.
pub struct BenchGroup {
    pub creator: MimiClient,
    pub group_id: GroupId,
    /// The `ds_add_users` request that added everyone but the creator.
    pub add_request: Option<DSRequest>,
}

impl BenchGroup {
    pub fn new(members: usize, providers: usize) -> Result<Self, ClientError> {
        let domain = |i: usize| format!("p{}.example", i % providers.max(1));
        let client = |i: usize| -> Result<ClientId, ClientError> {
            format!("mimi://{}/d/user{i}/dev", domain(i))
                .parse()
                .map_err(|e: mimid_wire::IdentifierError| ClientError::Mls(e.0))
        };
        let hub: ProviderDomain = domain(0)
            .parse()
            .map_err(|e: mimid_wire::IdentifierError| ClientError::Mls(e.0))?;
        let group_id = GroupId {
            hub_domain: hub,
            local_id: [7; 16],
        };
        let mut creator = MimiClient::new(client(0)?)?;
        creator.create_group(&group_id, GroupKind::Regular)?;
        let key_packages = (1..members)
            .map(|i| MimiClient::new(client(i)?)?.key_package(false, false))
            .collect::<Result<Vec<_>, _>>()?;
        let mut add_request = None;
        if !key_packages.is_empty() {
            add_request = Some(creator.add(&group_id, &key_packages, false)?);
            creator.merge_pending_commit(&group_id)?;
        }
        Ok(BenchGroup {
            creator,
            group_id,
            add_request,
        })
    }

    /// A `ds_update_client` request (commit with a fresh path), left pending.
    pub fn update_request(&mut self) -> Result<DSRequest, ClientError> {
        let request = self.creator.update(&self.group_id)?;
        self.creator.clear_pending_commit(&self.group_id)?;
        Ok(request)
    }

    /// A `ds_send_message` request with `len` bytes of plaintext.
    pub fn message_request(&mut self, len: usize) -> Result<DSRequest, ClientError> {
        self.creator.send_message(&self.group_id, &vec![0x61; len])
    }
}
