//! The guest side on a real SQLite file (`docs/protocol.md` 7): a delivery
//! reaches the queues of its known recipients once, a repeat is answered
//! as the first and queues nothing, a reused id or a delivery that breaks a
//! rule is refused and changes nothing, and acknowledgements empty queues.

use std::sync::Arc;

use mimid_client::MimiClient;
use mimid_core::guest::QsEndpoint;
use mimid_service::ServiceError;
use mimid_service::guest::Guest;
use mimid_store::{Durability, SqliteStore, Store};
use mimid_wire::{
    BatchedMessage, ClientId, ConnectionRequest, DSRequestBody, DeliverMessage, DeliverMessages,
    DeliverableMessage, ErrorCode, GroupId, GroupIdField, GroupKind, MessageId, ProviderDomain,
    QueueingServicePayload, QueueingServiceRequest,
};

const NOW: u64 = 1_795_000_000;

fn domain(d: &str) -> ProviderDomain {
    d.parse().unwrap()
}

fn id(c: &str) -> ClientId {
    c.parse().unwrap()
}

/// Real application messages of a group hosted on a.example.
fn messages(n: usize) -> (GroupId, Vec<DeliverableMessage>) {
    let group_id = GroupId {
        hub_domain: domain("a.example"),
        local_id: [7; 16],
    };
    let mut alice = MimiClient::new(id("mimi://a.example/d/alice/phone")).unwrap();
    alice.create_group(&group_id, GroupKind::Regular).unwrap();
    let messages = (0..n)
        .map(|i| {
            let request = alice
                .send_message(&group_id, format!("message {i}").as_bytes())
                .unwrap();
            let DSRequestBody::SendMessage(m) = request.request_body else {
                unreachable!()
            };
            DeliverableMessage::from_bytes(m.application_message.as_bytes()).unwrap()
        })
        .collect();
    (group_id, messages)
}

fn delivery(
    group_id: &GroupId,
    message: &DeliverableMessage,
    message_id: u8,
    recipients: &[&str],
) -> QueueingServiceRequest {
    QueueingServiceRequest {
        version: 1,
        sender: domain("a.example"),
        recipient: domain("b.example"),
        message_id: MessageId([message_id; 16]),
        payload: QueueingServicePayload::DeliverMessage(DeliverMessage {
            group_id: GroupIdField(group_id.clone()),
            epoch: 0,
            recipients: recipients.iter().map(|c| id(c)).collect(),
            message: message.clone(),
        }),
    }
}

/// The `deliver_message` requests `singles` sent together, as a
/// `deliver_messages` under the first one's id.
fn batch(singles: &[QueueingServiceRequest]) -> QueueingServiceRequest {
    let messages = singles
        .iter()
        .map(|r| {
            let QueueingServicePayload::DeliverMessage(d) = &r.payload else {
                panic!("not a deliver_message")
            };
            BatchedMessage {
                message_id: r.message_id,
                deliver_message: d.clone(),
            }
        })
        .collect();
    QueueingServiceRequest {
        payload: QueueingServicePayload::DeliverMessages(DeliverMessages { messages }),
        ..singles[0].clone()
    }
}

const BOB: &str = "mimi://b.example/d/bob/phone";
const BOB_LAPTOP: &str = "mimi://b.example/d/bob/laptop";
const GHOST: &str = "mimi://b.example/d/ghost/phone";

struct Provider {
    store: SqliteStore,
    guest: Guest,
    _dir: tempfile::TempDir,
}

async fn provider_b() -> Provider {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("b.db"), Durability::Process)
        .await
        .unwrap();
    for client in [BOB, BOB_LAPTOP] {
        let client = id(client);
        store
            .add_client(client.to_string(), client.user().to_string(), NOW)
            .await
            .unwrap();
    }
    Provider {
        store,
        guest: Guest::new(domain("b.example")),
        _dir: dir,
    }
}

impl Provider {
    async fn deliver(
        &self,
        from: &str,
        request: &QueueingServiceRequest,
    ) -> Result<Vec<String>, ServiceError> {
        self.guest
            .deliver(
                &self.store,
                &domain(from),
                QsEndpoint::DeliverMessage,
                request,
                NOW,
            )
            .await
            .map(|ok| {
                ok.unknown_recipients
                    .iter()
                    .map(|c| c.to_string())
                    .collect()
            })
    }

    async fn queue(&self, client: &str) -> Vec<Vec<u8>> {
        self.store
            .client_queue(client, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|q| q.message)
            .collect()
    }

    /// Every queue's contents: nothing else may change on a refusal.
    async fn queues(&self) -> Vec<Vec<Vec<u8>>> {
        let mut all = Vec::new();
        for c in [BOB, BOB_LAPTOP, GHOST] {
            all.push(self.queue(c).await);
        }
        all
    }
}

fn code(result: Result<Vec<String>, ServiceError>) -> ErrorCode {
    match result {
        Err(e) => e.to_ds_error().code,
        Ok(ok) => panic!("accepted: {ok:?}"),
    }
}

#[tokio::test]
async fn a_delivery_reaches_each_known_recipient_once_and_reports_the_unknown() {
    let b = provider_b().await;
    let (group_id, messages) = messages(1);
    let request = delivery(&group_id, &messages[0], 1, &[BOB, GHOST, BOB_LAPTOP]);
    let unknown = b.deliver("a.example", &request).await.unwrap();
    assert_eq!(unknown, vec![GHOST.to_string()]);
    for c in [BOB, BOB_LAPTOP] {
        assert_eq!(
            b.queue(c).await,
            vec![messages[0].as_bytes().to_vec()],
            "{c}"
        );
    }
    assert!(b.queue(GHOST).await.is_empty());

    // The same request again: the same answer, nothing queued twice.
    let again = b.deliver("a.example", &request).await.unwrap();
    assert_eq!(again, unknown);
    assert_eq!(b.queue(BOB).await.len(), 1);
}

#[tokio::test]
async fn messages_are_queued_in_the_order_they_arrive() {
    let b = provider_b().await;
    let (group_id, messages) = messages(5);
    for (i, m) in messages.iter().enumerate() {
        let request = delivery(&group_id, m, i as u8 + 1, &[BOB]);
        b.deliver("a.example", &request).await.unwrap();
    }
    let want: Vec<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
    assert_eq!(b.queue(BOB).await, want);
    // Reading after a position gives what follows it.
    let queued = b.store.client_queue(BOB, 0, 100).await.unwrap();
    let rest = b.store.client_queue(BOB, queued[1].seq, 100).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[0].message, want[2]);
}

#[tokio::test]
async fn a_reused_message_id_with_another_body_is_refused_and_changes_nothing() {
    let b = provider_b().await;
    let (group_id, messages) = messages(2);
    b.deliver("a.example", &delivery(&group_id, &messages[0], 1, &[BOB]))
        .await
        .unwrap();
    let before = b.queues().await;
    let reused = delivery(&group_id, &messages[1], 1, &[BOB]);
    assert_eq!(
        code(b.deliver("a.example", &reused).await),
        ErrorCode::MessageIdReuse
    );
    assert_eq!(b.queues().await, before);
}

#[tokio::test]
async fn a_batch_is_queued_in_order_and_a_message_delivered_before_in_any_form_is_not_queued_again()
{
    let b = provider_b().await;
    let (group_id, messages) = messages(4);
    let one =
        |i: usize, recipients: &[&str]| delivery(&group_id, &messages[i], i as u8 + 1, recipients);
    let bytes = |range: std::ops::Range<usize>| -> Vec<Vec<u8>> {
        messages[range]
            .iter()
            .map(|m| m.as_bytes().to_vec())
            .collect()
    };
    // Messages 0 and 1 together; the answer names the unknown client once.
    let unknown = b
        .deliver(
            "a.example",
            &batch(&[one(0, &[BOB, GHOST]), one(1, &[GHOST, BOB_LAPTOP])]),
        )
        .await
        .unwrap();
    assert_eq!(unknown, vec![GHOST.to_string()]);
    assert_eq!(b.queue(BOB).await, bytes(0..1));
    assert_eq!(b.queue(BOB_LAPTOP).await, bytes(1..2));
    // Message 0 again on its own (its batch's answer was lost, say):
    // answered as then, queued nothing.
    assert_eq!(
        b.deliver("a.example", &one(0, &[BOB, GHOST]))
            .await
            .unwrap(),
        vec![GHOST.to_string()]
    );
    // Message 2 alone, then a batch of 1 (delivered before), 2 (too) and 3:
    // only 3 is new.
    b.deliver("a.example", &one(2, &[BOB])).await.unwrap();
    let unknown = b
        .deliver(
            "a.example",
            &batch(&[one(1, &[GHOST, BOB_LAPTOP]), one(2, &[BOB]), one(3, &[BOB])]),
        )
        .await
        .unwrap();
    assert_eq!(unknown, vec![GHOST.to_string()]);
    assert_eq!(b.queue(BOB).await, [bytes(0..1), bytes(2..4)].concat());
    assert_eq!(b.queue(BOB_LAPTOP).await, bytes(1..2));
    // The same message twice under one id counts once.
    let b2 = provider_b().await;
    b2.deliver(
        "a.example",
        &batch(&[one(0, &[BOB]), one(0, &[BOB]), one(1, &[BOB])]),
    )
    .await
    .unwrap();
    assert_eq!(b2.queue(BOB).await, bytes(0..2));
}

#[tokio::test]
async fn a_batch_with_one_bad_message_is_refused_whole_and_changes_nothing() {
    let b = provider_b().await;
    let (group_id, messages) = messages(3);
    let one =
        |i: usize, id: u8, recipients: &[&str]| delivery(&group_id, &messages[i], id, recipients);
    b.deliver("a.example", &one(0, 1, &[BOB])).await.unwrap();
    let before = b.queues().await;
    let foreign = GroupId {
        hub_domain: domain("c.example"),
        local_id: [9; 16],
    };
    let cases: Vec<(&str, QueueingServiceRequest, ErrorCode)> = vec![
        // A new message, then one under the id of message 0 with other contents.
        (
            "reused id",
            batch(&[one(1, 2, &[BOB]), one(2, 1, &[BOB])]),
            ErrorCode::MessageIdReuse,
        ),
        // One id twice, with two different messages.
        (
            "id twice",
            batch(&[one(1, 3, &[BOB]), one(2, 3, &[BOB])]),
            ErrorCode::MessageIdReuse,
        ),
        // A recipient of another provider in the second message.
        (
            "foreign recipient",
            batch(&[
                one(1, 4, &[BOB]),
                one(2, 5, &["mimi://c.example/d/carol/phone"]),
            ]),
            ErrorCode::WrongRecipient,
        ),
        // A message of a group a.example is not the hub of.
        (
            "not the hub",
            batch(&[
                one(1, 6, &[BOB]),
                delivery(&foreign, &messages[2], 7, &[BOB]),
            ]),
            ErrorCode::OperationNotAllowed,
        ),
    ];
    for (name, request, want) in cases {
        assert_eq!(code(b.deliver("a.example", &request).await), want, "{name}");
        assert_eq!(b.queues().await, before, "{name}");
    }
    // Batches belong on /deliver_message.
    let request = batch(&[one(1, 8, &[BOB])]);
    let refused = b
        .guest
        .deliver(
            &b.store,
            &domain("a.example"),
            QsEndpoint::ConnectionRequest,
            &request,
            NOW,
        )
        .await
        .map(|_| Vec::new());
    assert_eq!(code(refused), ErrorCode::WrongEndpoint);
    assert_eq!(b.queues().await, before);
    // None of the refused requests was remembered: the good messages of
    // one go through later, under their ids.
    b.deliver("a.example", &batch(&[one(1, 2, &[BOB]), one(2, 4, &[BOB])]))
        .await
        .unwrap();
    assert_eq!(b.queue(BOB).await.len(), 3);
}

#[tokio::test]
async fn deliveries_that_break_a_rule_are_refused_and_change_nothing() {
    let b = provider_b().await;
    let (group_id, messages) = messages(1);
    let good = delivery(&group_id, &messages[0], 1, &[BOB]);

    let mut cases: Vec<(&str, QueueingServiceRequest, &str, ErrorCode)> = Vec::new();
    // Signed by another provider than the one it names.
    cases.push((
        "sender",
        good.clone(),
        "c.example",
        ErrorCode::ProviderAuthenticationFailed,
    ));
    let mut other_recipient = good.clone();
    other_recipient.recipient = domain("c.example");
    cases.push((
        "recipient",
        other_recipient,
        "a.example",
        ErrorCode::WrongRecipient,
    ));
    let foreign_client = delivery(
        &group_id,
        &messages[0],
        1,
        &[BOB, "mimi://c.example/d/carol/phone"],
    );
    cases.push((
        "client",
        foreign_client,
        "a.example",
        ErrorCode::WrongRecipient,
    ));
    // c.example delivering for a group a.example hosts.
    let mut not_the_hub = good.clone();
    not_the_hub.sender = domain("c.example");
    cases.push((
        "hub",
        not_the_hub,
        "c.example",
        ErrorCode::OperationNotAllowed,
    ));
    let mut connection = good.clone();
    connection.payload = QueueingServicePayload::ConnectionRequest(ConnectionRequest {
        sender_user: "mimi://a.example/u/alice".parse().unwrap(),
        recipient_user: "mimi://b.example/u/bob".parse().unwrap(),
        group_id: GroupIdField(group_id.clone()),
        epoch: 1,
        welcome: a_welcome(),
    });
    cases.push((
        "endpoint",
        connection,
        "a.example",
        ErrorCode::WrongEndpoint,
    ));

    for (name, request, from, want) in cases {
        let before = b.queues().await;
        assert_eq!(code(b.deliver(from, &request).await), want, "{name}");
        assert_eq!(b.queues().await, before, "{name} changed a queue");
    }
    // Refusals are not remembered: the good request still goes through
    // under the same id afterwards.
    assert!(
        b.store
            .remembered("a.example", [1; 16])
            .await
            .unwrap()
            .is_none()
    );
    b.deliver("a.example", &good).await.unwrap();
    assert_eq!(b.queue(BOB).await.len(), 1);
}

/// A real Welcome (Alice adds Bob's laptop to a group of her own).
fn a_welcome() -> mimid_wire::WelcomeMessage {
    let group_id = GroupId {
        hub_domain: domain("a.example"),
        local_id: [9; 16],
    };
    let mut alice = MimiClient::new(id("mimi://a.example/d/alice/desk")).unwrap();
    alice.create_group(&group_id, GroupKind::Regular).unwrap();
    let laptop = MimiClient::new(id(BOB_LAPTOP)).unwrap();
    let kp = laptop.key_package(false, false).unwrap();
    let body = alice.add(&group_id, &[kp], false).unwrap().request_body;
    let DSRequestBody::AddUsers(add) = body else {
        unreachable!()
    };
    add.welcome_messages.into_iter().next().unwrap()
}

#[tokio::test]
async fn concurrent_repeats_queue_once() {
    let b = Arc::new(provider_b().await);
    let (group_id, messages) = messages(1);
    let request = Arc::new(delivery(&group_id, &messages[0], 1, &[BOB, GHOST]));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (b, request) = (b.clone(), request.clone());
            tokio::spawn(async move { b.deliver("a.example", &request).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), vec![GHOST.to_string()]);
    }
    assert_eq!(b.queue(BOB).await.len(), 1);
}

#[tokio::test]
async fn acknowledgements_empty_one_clients_queue_up_to_a_position() {
    let b = provider_b().await;
    let (group_id, messages) = messages(3);
    for (i, m) in messages.iter().enumerate() {
        b.deliver(
            "a.example",
            &delivery(&group_id, m, i as u8 + 1, &[BOB, BOB_LAPTOP]),
        )
        .await
        .unwrap();
    }
    let queued = b.store.client_queue(BOB, 0, 100).await.unwrap();
    b.store
        .acknowledge(BOB.into(), queued[1].seq)
        .await
        .unwrap();
    let rest = b.queue(BOB).await;
    assert_eq!(rest, vec![messages[2].as_bytes().to_vec()]);
    // The laptop still has all three: acknowledging is per client.
    assert_eq!(b.queue(BOB_LAPTOP).await.len(), 3);
    b.store
        .acknowledge(BOB_LAPTOP.into(), u64::MAX)
        .await
        .unwrap();
    assert!(b.queue(BOB_LAPTOP).await.is_empty());
    b.store.acknowledge(BOB.into(), u64::MAX).await.unwrap();
    assert!(b.queue(BOB).await.is_empty());
}

#[tokio::test]
async fn a_delivery_is_remembered_until_pruned() {
    let b = provider_b().await;
    let (group_id, messages) = messages(1);
    let request = delivery(&group_id, &messages[0], 1, &[BOB]);
    b.deliver("a.example", &request).await.unwrap();
    // Pruning what was received before then keeps it.
    b.store.prune_inbound(NOW).await.unwrap();
    b.deliver("a.example", &request).await.unwrap();
    assert_eq!(b.queue(BOB).await.len(), 1);
    // Once forgotten, the same request is a new delivery.
    b.store.prune_inbound(NOW + 1).await.unwrap();
    assert!(
        b.store
            .remembered("a.example", [1; 16])
            .await
            .unwrap()
            .is_none()
    );
    b.deliver("a.example", &request).await.unwrap();
    assert_eq!(b.queue(BOB).await.len(), 2);
}

#[tokio::test]
async fn known_recipients_are_found_among_many() {
    let b = provider_b().await;
    let (group_id, messages) = messages(1);
    let strangers: Vec<String> = (0..700)
        .map(|i| format!("mimi://b.example/d/stranger{i}/phone"))
        .collect();
    let mut recipients: Vec<&str> = strangers.iter().map(String::as_str).collect();
    recipients.insert(0, BOB);
    recipients.insert(650, BOB_LAPTOP);
    let request = delivery(&group_id, &messages[0], 1, &recipients);
    let unknown = b.deliver("a.example", &request).await.unwrap();
    assert_eq!(unknown, strangers);
    assert_eq!(b.queue(BOB).await.len(), 1);
    assert_eq!(b.queue(BOB_LAPTOP).await.len(), 1);
}
