-- mimid store, schema version 4: the guest side (docs/protocol.md 7) and
-- dead letters of the hub's outbox.

-- The provider's own clients (its client directory): a delivery queues a
-- message only for clients listed here; the others are reported back as
-- unknown recipients.
CREATE TABLE clients (
    client_id  TEXT    PRIMARY KEY NOT NULL,
    user_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX clients_by_user ON clients (user_id);

-- Accepted deliveries, remembered by (sending provider, message id) with
-- the hash of their body and the answer they got, so that a repeat gets
-- the same answer and is not queued twice.
CREATE TABLE inbound (
    sender      TEXT    NOT NULL,
    message_id  BLOB    NOT NULL,
    body_sha256 BLOB    NOT NULL,
    answer      BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (sender, message_id)
);
-- Pruning remembered deliveries after their retention.
CREATE INDEX inbound_by_time ON inbound (received_at);

-- A delivered message, stored once however many local clients get it.
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sender      TEXT    NOT NULL,
    message_id  BLOB    NOT NULL,
    group_id    BLOB    NOT NULL,
    epoch       INTEGER NOT NULL,
    message     BLOB    NOT NULL,
    received_at INTEGER NOT NULL
);

-- Each client's queue, in arrival order (`seq`): the hub delivers the
-- messages of a group in order, one request at a time per destination, so
-- arrival order is hub order.
CREATE TABLE client_queue (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT    NOT NULL,
    inbox_id  INTEGER NOT NULL REFERENCES inbox (id)
);
CREATE INDEX client_queue_by_client ON client_queue (client_id, seq);
-- Acknowledging ("does another queue still hold this message?").
CREATE INDEX client_queue_by_inbox ON client_queue (inbox_id);

-- Outbox jobs that could not be delivered: refused for good by their
-- destination, or not delivered before `delivery_expiry`. Kept, never
-- silently dropped.
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL,
    destination TEXT    NOT NULL,
    message_id  BLOB    NOT NULL,
    recipients  BLOB    NOT NULL,
    body        BLOB    NOT NULL,
    attempts    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    failed_at   INTEGER NOT NULL,
    reason      TEXT    NOT NULL
);
