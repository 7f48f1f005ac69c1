//! KeyPackages on a real SQLite file (`docs/protocol.md` 9): clients publish
//! them, real OpenMLS ones; other providers fetch one per client of a user;
//! a one-time package is handed out once, even to concurrent requesters, the
//! last-resort one once none is left; regular packages only to a connection.

use std::collections::HashSet;
use std::sync::Arc;

use mimid_client::MimiClient;
use mimid_service::ServiceError;
use mimid_service::people::{People, PeopleConfig};
use mimid_store::{Durability, KeyPackageKind, KeyPackageStock, SqliteStore, Store};
use mimid_wire::{ClientId, ErrorCode, KeyPackage, KeyPackagesOk, UserId};

const NOW: u64 = 1_795_000_000;
const BOB_PHONE: &str = "mimi://b.example/d/bob/phone";
const BOB_LAPTOP: &str = "mimi://b.example/d/bob/laptop";
const BOB: &str = "mimi://b.example/u/bob";
const ALICE: &str = "mimi://a.example/u/alice";

fn cid(c: &str) -> ClientId {
    c.parse().unwrap()
}

fn uid(u: &str) -> UserId {
    u.parse().unwrap()
}

struct Provider {
    store: Arc<SqliteStore>,
    people: People,
    _dir: tempfile::TempDir,
}

/// b.example with Bob's phone and laptop.
async fn provider_b() -> Provider {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("b.db"), Durability::Process)
        .await
        .unwrap();
    for client in [BOB_PHONE, BOB_LAPTOP] {
        store
            .add_client(client.into(), BOB.into(), NOW)
            .await
            .unwrap();
    }
    Provider {
        store: Arc::new(store),
        people: People::new("b.example".parse().unwrap(), PeopleConfig::default()),
        _dir: dir,
    }
}

impl Provider {
    async fn publish(
        &self,
        client: &MimiClient,
        connection: bool,
        one_time: usize,
        last_resort: bool,
    ) -> Vec<KeyPackage> {
        let mut packages: Vec<KeyPackage> = (0..one_time)
            .map(|_| client.key_package(connection, false).unwrap())
            .collect();
        if last_resort {
            packages.push(client.key_package(connection, true).unwrap());
        }
        self.people
            .publish(&*self.store, client.id(), &packages, NOW)
            .await
            .unwrap();
        packages
    }

    async fn fetch(
        &self,
        kind: KeyPackageKind,
        requester: &str,
        target: &str,
        clients: &[&str],
        now: u64,
    ) -> Result<KeyPackagesOk, ServiceError> {
        let requester = uid(requester);
        let clients: Vec<ClientId> = clients.iter().map(|c| cid(c)).collect();
        self.people
            .key_packages(
                &*self.store,
                &requester.domain(),
                kind,
                &requester,
                &uid(target),
                &clients,
                now,
            )
            .await
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> ErrorCode {
    match result {
        Err(e) => e.to_ds_error().code,
        Ok(ok) => panic!("answered: {ok:?}"),
    }
}

fn bytes(packages: &[KeyPackage]) -> Vec<Vec<u8>> {
    packages.iter().map(|k| k.as_bytes().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_time_key_package_goes_to_one_of_32_concurrent_requesters_then_the_last_resort_one() {
    let b = Arc::new(provider_b().await);
    let phone = MimiClient::new(cid(BOB_PHONE)).unwrap();
    let laptop = MimiClient::new(cid(BOB_LAPTOP)).unwrap();
    let phone_packages = bytes(&b.publish(&phone, true, 5, true).await);
    let laptop_packages = bytes(&b.publish(&laptop, true, 20, true).await);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                let requester = format!("mimi://a.example/u/user{i}");
                b.fetch(KeyPackageKind::Connection, &requester, BOB, &[], NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut handed = Vec::new();
    for task in tasks {
        let ok = task.await.unwrap();
        assert_eq!(ok.target, uid(BOB));
        // One per client.
        assert_eq!(ok.key_packages.len(), 2);
        handed.extend(bytes(&ok.key_packages));
    }
    let (phone_last, phone_once) = phone_packages.split_last().unwrap();
    let (laptop_last, laptop_once) = laptop_packages.split_last().unwrap();
    // Every one-time package went to exactly one requester.
    for once in phone_once.iter().chain(laptop_once) {
        assert_eq!(handed.iter().filter(|h| *h == once).count(), 1);
    }
    // Then the last-resort ones: the phone's to the 27 requesters after
    // its 5, the laptop's to the 12 after its 20.
    assert_eq!(handed.iter().filter(|h| *h == phone_last).count(), 27);
    assert_eq!(handed.iter().filter(|h| *h == laptop_last).count(), 12);
    assert_eq!(handed.len(), 64);
    let distinct: HashSet<&Vec<u8>> = handed.iter().collect();
    assert_eq!(distinct.len(), 5 + 20 + 2);
    // The last-resort packages stay; the one-time ones are spent.
    let stock = b
        .store
        .key_package_stock(BOB_PHONE, KeyPackageKind::Connection, NOW)
        .await
        .unwrap();
    assert_eq!(
        stock,
        KeyPackageStock {
            one_time: 0,
            last_resort: true
        }
    );
}

#[tokio::test]
async fn regular_key_packages_only_for_a_connection_and_of_the_named_clients() {
    let b = provider_b().await;
    let phone = MimiClient::new(cid(BOB_PHONE)).unwrap();
    let laptop = MimiClient::new(cid(BOB_LAPTOP)).unwrap();
    let phone_regular = bytes(&b.publish(&phone, false, 2, false).await);
    b.publish(&laptop, false, 2, false).await;
    b.publish(&phone, true, 2, false).await;
    // Without a connection: refused, and nothing is handed out.
    assert_eq!(
        code(b.fetch(KeyPackageKind::Regular, ALICE, BOB, &[], NOW).await),
        ErrorCode::NotConnected
    );
    let stock = b
        .store
        .key_package_stock(BOB_PHONE, KeyPackageKind::Regular, NOW)
        .await
        .unwrap();
    assert_eq!(stock.one_time, 2);
    // A connection package is no regular one, and the other way round.
    b.store
        .add_connection(BOB.into(), ALICE.into(), NOW)
        .await
        .unwrap();
    let ok = b
        .fetch(KeyPackageKind::Regular, ALICE, BOB, &[BOB_PHONE], NOW)
        .await
        .unwrap();
    assert_eq!(bytes(&ok.key_packages), phone_regular[..1]);
    let ok = b
        .fetch(KeyPackageKind::Regular, ALICE, BOB, &[], NOW)
        .await
        .unwrap();
    assert_eq!(ok.key_packages.len(), 2);
    assert!(bytes(&ok.key_packages).contains(&phone_regular[1]));
    // The connection was Bob's with Alice, not with anyone of a.example.
    assert_eq!(
        code(
            b.fetch(
                KeyPackageKind::Regular,
                "mimi://a.example/u/mallory",
                BOB,
                &[],
                NOW
            )
            .await
        ),
        ErrorCode::NotConnected
    );
    // The phone's are spent; the laptop has one left, then none.
    let ok = b
        .fetch(KeyPackageKind::Regular, ALICE, BOB, &[], NOW)
        .await
        .unwrap();
    assert_eq!(ok.key_packages.len(), 1);
    assert!(!phone_regular.contains(&ok.key_packages[0].as_bytes().to_vec()));
    assert_eq!(
        code(b.fetch(KeyPackageKind::Regular, ALICE, BOB, &[], NOW).await),
        ErrorCode::NoKeyPackages
    );
    assert_eq!(
        b.fetch(KeyPackageKind::Connection, ALICE, BOB, &[], NOW)
            .await
            .unwrap()
            .key_packages
            .len(),
        1
    );
}

#[tokio::test]
async fn requests_that_break_a_rule_are_refused_and_hand_out_nothing() {
    let b = provider_b().await;
    let phone = MimiClient::new(cid(BOB_PHONE)).unwrap();
    b.publish(&phone, true, 1, false).await;
    let cases: Vec<(&str, Result<KeyPackagesOk, ServiceError>, ErrorCode)> = vec![
        (
            "target of another provider",
            b.fetch(
                KeyPackageKind::Connection,
                ALICE,
                "mimi://c.example/u/carol",
                &[],
                NOW,
            )
            .await,
            ErrorCode::WrongRecipient,
        ),
        (
            "unknown target",
            b.fetch(
                KeyPackageKind::Connection,
                ALICE,
                "mimi://b.example/u/nobody",
                &[],
                NOW,
            )
            .await,
            ErrorCode::UnknownUser,
        ),
        (
            "a client of another user",
            b.fetch(
                KeyPackageKind::Connection,
                ALICE,
                BOB,
                &["mimi://b.example/d/carol/phone"],
                NOW,
            )
            .await,
            ErrorCode::MalformedMessage,
        ),
        (
            "expired by then",
            b.fetch(
                KeyPackageKind::Connection,
                ALICE,
                BOB,
                &[],
                NOW + 400 * 24 * 3600,
            )
            .await,
            ErrorCode::NoKeyPackages,
        ),
    ];
    for (name, result, want) in cases {
        assert_eq!(code(result), want, "{name}");
    }
    // A requester that is not the sending provider's user.
    let requester = uid(ALICE);
    let refused = b
        .people
        .key_packages(
            &*b.store,
            &"c.example".parse().unwrap(),
            KeyPackageKind::Connection,
            &requester,
            &uid(BOB),
            &[],
            NOW,
        )
        .await;
    assert_eq!(code(refused), ErrorCode::OperationNotAllowed);
    // The one package is still there.
    let stock = b
        .store
        .key_package_stock(BOB_PHONE, KeyPackageKind::Connection, NOW)
        .await
        .unwrap();
    assert_eq!(stock.one_time, 1);
}

#[tokio::test]
async fn a_client_publishes_only_its_own_valid_key_packages() {
    let b = provider_b().await;
    let phone = MimiClient::new(cid(BOB_PHONE)).unwrap();
    let laptop = MimiClient::new(cid(BOB_LAPTOP)).unwrap();
    let stranger = MimiClient::new(cid("mimi://b.example/d/eve/phone")).unwrap();
    // The laptop's package, published as the phone's; and one of a client
    // b.example does not know.
    let refused = b
        .people
        .publish(
            &*b.store,
            phone.id(),
            &[
                phone.key_package(false, false).unwrap(),
                laptop.key_package(false, false).unwrap(),
            ],
            NOW,
        )
        .await;
    assert_eq!(code(refused), ErrorCode::OperationNotAllowed);
    let refused = b
        .people
        .publish(
            &*b.store,
            stranger.id(),
            &[stranger.key_package(false, false).unwrap()],
            NOW,
        )
        .await;
    assert_eq!(code(refused), ErrorCode::UnknownClient);
    // Nothing of the refused batch was stored.
    let stock = b
        .store
        .key_package_stock(BOB_PHONE, KeyPackageKind::Regular, NOW)
        .await
        .unwrap();
    assert_eq!(stock, KeyPackageStock::default());
    // A package that is valid for less than the minimum lifetime (OpenMLS
    // makes them for about 12 weeks: late in that life it is refused).
    let kp = phone.key_package(false, false).unwrap();
    let late = NOW.max(unix_now()) + 12 * 7 * 24 * 3600;
    let refused = b.people.publish(&*b.store, phone.id(), &[kp], late).await;
    assert_eq!(code(refused), ErrorCode::InvalidMlsMessage);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
