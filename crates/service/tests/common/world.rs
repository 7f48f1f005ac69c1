//! The conversation most tests start from: Alice (a.example, the hub's
//! own provider) has created a group and added Bob (b.example) and Carol
//! (c.example), who joined from their Welcomes.

use mimid_client::MimiClient;
use mimid_core::{DsEndpoint, HubError, Origin};
use mimid_wire::*;

use super::*;

pub const ALICE: &str = "mimi://a.example/d/alice/laptop";
pub const BOB: &str = "mimi://b.example/d/bob/phone";
pub const CAROL: &str = "mimi://c.example/d/carol/tablet";

pub struct World<B: Backend> {
    pub hub: B,
    pub group_id: GroupId,
    pub alice: MimiClient,
    pub bob: MimiClient,
    pub carol: MimiClient,
}

impl<B: Backend> World<B> {
    /// Alice creates a group on her hub and adds Bob and Carol, who join
    /// with the tree from `/welcome_information`.
    pub fn new() -> Self {
        let mut hub = B::new("a.example");
        let mut alice = client(ALICE);
        let bob = client(BOB);
        let carol = client(CAROL);
        let ask = DSRequest {
            version: 1,
            request_body: DSRequestBody::RequestGroupId,
            authentication_data: DSAuthData::Anonymous,
        };
        let outcome = hub.op(&ask, Origin::Local).expect("group id");
        let DSResponseBody::GroupId(GroupIdField(group_id)) = outcome.response else {
            panic!("no group id")
        };
        assert_eq!(group_id.hub_domain.as_str(), "a.example");
        hub.op(
            &alice.create_group(&group_id, GroupKind::Regular).unwrap(),
            Origin::Local,
        )
        .expect("create");
        assert_eq!(hub.group(&group_id).epoch(), 0);

        let bob_kp = bob.key_package(false, false).unwrap();
        let carol_kp = carol.key_package(false, false).unwrap();
        let add = alice
            .add(&group_id, &[bob_kp.clone(), carol_kp.clone()], false)
            .unwrap();
        let outcome = hub.op(&add, Origin::Local).expect("add_users");
        alice.merge_pending_commit(&group_id).unwrap();
        // Alice was alone: the commit goes to nobody, a Welcome to each guest.
        assert_eq!(outcome.sent.len(), 2, "{:?}", outcome.routes());
        assert!(outcome.sent.iter().all(Sent::is_welcome));
        assert_eq!(
            outcome.snapshot,
            Some((1, 2)),
            "joiner snapshot of epoch 1 with both joiners"
        );

        let mut world = World {
            hub,
            group_id,
            alice,
            bob,
            carol,
        };
        for (who, kp, domain) in [(BOB, bob_kp, "b.example"), (CAROL, carol_kp, "c.example")] {
            let welcome = outcome.welcome_for(who).expect("welcome");
            let joiner = if who == BOB {
                &mut world.bob
            } else {
                &mut world.carol
            };
            let request = joiner
                .welcome_information_request(&world.group_id, 1, &kp)
                .unwrap();
            let info = world
                .hub
                .call(DsEndpoint::WelcomeInformation, &request, provider(domain))
                .expect("welcome info");
            let DSResponseBody::WelcomeInfo(tree) = info.response else {
                panic!("no tree")
            };
            assert_eq!(joiner.join(&welcome, &tree).unwrap(), world.group_id);
        }
        world.assert_in_sync(&[ALICE, BOB, CAROL]);
        world
    }

    pub fn client(&mut self, id: &str) -> &mut MimiClient {
        match id {
            ALICE => &mut self.alice,
            BOB => &mut self.bob,
            CAROL => &mut self.carol,
            _ => panic!("unknown client {id}"),
        }
    }

    /// Every named client has the hub's epoch and tree hash.
    pub fn assert_in_sync(&mut self, who: &[&str]) {
        let group = self.hub.group(&self.group_id);
        let expected = (group.epoch(), group.tree_hash().to_vec());
        let group_id = self.group_id.clone();
        for id in who {
            assert_eq!(
                self.client(id).epoch_and_tree_hash(&group_id),
                Some(expected.clone()),
                "{id} out of sync"
            );
        }
    }

    /// Hands an accepted outcome's deliveries to the named clients.
    pub fn deliver(&mut self, outcome: &Effects, to: &[&str]) -> Vec<Option<Vec<u8>>> {
        to.iter()
            .map(|id| {
                let message = outcome
                    .delivered_to(id)
                    .unwrap_or_else(|| panic!("nothing for {id}"));
                self.client(id).process(&message).expect("process")
            })
            .collect()
    }

    /// Asserts that `request` is refused with `expected` and changes nothing.
    pub fn refused(
        &mut self,
        request: &DSRequest,
        origin: Origin,
        expected: impl Fn(&HubError) -> bool,
    ) -> HubError {
        let before = self.hub.fingerprint(&self.group_id);
        let err = self
            .hub
            .op(request, origin)
            .expect_err("request was accepted");
        assert!(expected(&err), "unexpected error: {err:?}");
        assert_eq!(
            self.hub.fingerprint(&self.group_id),
            before,
            "a refused request changed the state"
        );
        err
    }
}

/// `/external_commit_information` for `requester`, asked by its provider.
pub fn external_commit_info<B: Backend>(
    w: &mut World<B>,
    requester: ClientId,
) -> ExternalCommitInfo {
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::ExternalCommitInformation(ExternalCommitInformationRequest {
            group_id: GroupIdField(w.group_id.clone()),
            requester: requester.clone(),
        }),
        authentication_data: DSAuthData::Anonymous,
    };
    let domain = provider(requester.domain().as_str());
    let info = w
        .hub
        .call(DsEndpoint::ExternalCommitInformation, &ask, domain)
        .expect("external commit info");
    let DSResponseBody::ExternalCommitInfo(info) = info.response else {
        panic!("no external commit info")
    };
    info
}

/// Each scenario on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod core_alone {
            $( #[test] fn $name() { super::$name::<super::Memory>() } )*
        }
        mod through_sqlite {
            $( #[test] fn $name() { super::$name::<super::Sqlite>() } )*
        }
    };
}
