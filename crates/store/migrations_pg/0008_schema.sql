-- mimid store on PostgreSQL, schema version 8: what SQLite's migrations
-- 1 to 8 (crates/store/migrations) hold, created at once. The versions are
-- kept in step: a later change is a file of the same number in both
-- directories. All times are seconds since the Unix epoch; group ids,
-- message ids, states, snapshots, bodies and recipient lists are opaque.
--
-- Where several mimid processes share the database, what needs an order
-- across them is ordered by the writers (docs/architecture.md): a
-- destination's jobs and the inbox are inserted under transaction-level
-- advisory locks, so that their ids become visible in increasing order.

-- One row per group slot: a reservation or an active group. `version`
-- increments with every committed step that writes the slot; a step names
-- the version it expects, so only one writer per group wins, whichever
-- process it runs in.
CREATE TABLE groups (
    group_id       bytea  PRIMARY KEY,
    version        bigint NOT NULL CHECK (version >= 1),
    state_len      bigint NOT NULL CHECK (state_len >= 0),
    reserved_until bigint NULL,
    updated_at     bigint NOT NULL
);
CREATE INDEX groups_by_reservation ON groups (reserved_until) WHERE reserved_until IS NOT NULL;

-- Page `page` of a group's state: bytes [page * 3840, (page + 1) * 3840)
-- (`mimid_store::STATE_PAGE`), so that a commit rewrites the pages it
-- changed.
CREATE TABLE state_pages (
    group_id bytea   NOT NULL,
    page     integer NOT NULL CHECK (page >= 0),
    data     bytea   NOT NULL,
    PRIMARY KEY (group_id, page)
);

-- What joiners of one epoch need.
CREATE TABLE snapshots (
    group_id   bytea  NOT NULL,
    epoch      bigint NOT NULL,
    created_at bigint NOT NULL,
    data       bytea  NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
CREATE INDEX snapshots_by_time ON snapshots (created_at);

-- A message stored once, however many jobs deliver it; removed with the
-- last job that refers to it.
CREATE TABLE messages (
    message_id bytea  PRIMARY KEY,
    group_id   bytea  NOT NULL,
    body       bytea  NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX messages_by_time ON messages (created_at);

-- Delivery jobs: one message for its recipients on one destination.
CREATE TABLE jobs (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination text    NOT NULL,
    message_id  bytea   NOT NULL REFERENCES messages (message_id),
    recipients  bytea   NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  bigint  NOT NULL
);
CREATE INDEX jobs_by_destination ON jobs (destination, id);
CREATE INDEX jobs_by_message ON jobs (message_id);

-- Outbox jobs that could not be delivered, kept for the operator.
CREATE TABLE dead_letters (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint  NOT NULL,
    destination text    NOT NULL,
    message_id  bytea   NOT NULL,
    recipients  bytea   NOT NULL,
    body        bytea   NOT NULL,
    attempts    integer NOT NULL,
    created_at  bigint  NOT NULL,
    failed_at   bigint  NOT NULL,
    reason      text    NOT NULL
);

-- The provider's users and clients (its client directory). `public_key`
-- is the request signing key of a client of the client API.
CREATE TABLE users (
    user_id    text   PRIMARY KEY,
    created_at bigint NOT NULL
);
CREATE TABLE clients (
    client_id  text   PRIMARY KEY,
    user_id    text   NOT NULL,
    created_at bigint NOT NULL,
    public_key bytea  NULL
);
CREATE INDEX clients_by_user ON clients (user_id, client_id);

-- Accepted deliveries and connection requests, remembered by (sending
-- provider, message id) with the hash of their body and their answer.
CREATE TABLE inbound (
    sender      text   NOT NULL,
    message_id  bytea  NOT NULL,
    body_sha256 bytea  NOT NULL,
    answer      bytea  NOT NULL,
    received_at bigint NOT NULL,
    PRIMARY KEY (sender, message_id)
);
CREATE INDEX inbound_by_time ON inbound (received_at);

-- A message for this provider's clients, stored once however many of them
-- get it; `id` is its position in every queue holding it.
CREATE TABLE inbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender      text   NOT NULL,
    message_id  bytea  NOT NULL,
    group_id    bytea  NOT NULL,
    epoch       bigint NOT NULL,
    message     bytea  NOT NULL,
    received_at bigint NOT NULL
);

-- Each client's queue: the inbox rows it has not acknowledged. (SQLite
-- keeps recipient sets and cursors instead, to write fewer pages per
-- delivery; here a row per recipient keeps acknowledgements of different
-- processes independent of each other.)
CREATE TABLE client_queue (
    client_id text   NOT NULL,
    inbox_id  bigint NOT NULL REFERENCES inbox (id),
    PRIMARY KEY (client_id, inbox_id)
);
CREATE INDEX client_queue_by_inbox ON client_queue (inbox_id);

-- KeyPackages published by the provider's clients. `kind` 0 is regular,
-- 1 a connection KeyPackage; a one-time package is handed out once (then
-- `claimed_at` is set and it is kept until pruned), a last-resort one
-- whenever no one-time package of its kind is left.
CREATE TABLE key_packages (
    id           bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id    text     NOT NULL,
    kind         smallint NOT NULL,
    last_resort  boolean  NOT NULL,
    not_after    bigint   NOT NULL,
    key_package  bytea    NOT NULL,
    published_at bigint   NOT NULL,
    claimed_at   bigint   NULL
);
CREATE INDEX key_packages_by_client ON key_packages (client_id, kind, last_resort, id)
    WHERE claimed_at IS NULL;

-- `user_id` (this provider's) accepted `peer`'s connection request, or
-- asked `peer` itself.
CREATE TABLE connections (
    user_id text   NOT NULL,
    peer    text   NOT NULL,
    since   bigint NOT NULL,
    PRIMARY KEY (user_id, peer)
);

-- Enrolment secrets, by their SHA-256: good for one client of `user_id`
-- until `expires_at`.
CREATE TABLE enrolments (
    secret_sha256 bytea  PRIMARY KEY,
    user_id       text   NOT NULL,
    expires_at    bigint NOT NULL,
    created_at    bigint NOT NULL
);

-- Connection requests waiting for a user of this provider.
CREATE TABLE connection_requests (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender         text   NOT NULL,
    sender_user    text   NOT NULL,
    recipient_user text   NOT NULL,
    group_id       bytea  NOT NULL,
    epoch          bigint NOT NULL,
    welcome        bytea  NOT NULL,
    received_at    bigint NOT NULL
);
CREATE INDEX connection_requests_by_user ON connection_requests (recipient_user, id);

-- `user_id` (this provider's) refuses connection requests from `peer`.
CREATE TABLE blocks (
    user_id text   NOT NULL,
    peer    text   NOT NULL,
    since   bigint NOT NULL,
    PRIMARY KEY (user_id, peer)
);

-- Nonces of verified provider-signed requests, for the processes sharing
-- this database: a request replayed to any of them is refused.
CREATE TABLE nonces (
    sender     text   NOT NULL,
    nonce      bytea  NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (sender, nonce)
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

-- Which process's outbox sends a destination's jobs, until when.
CREATE TABLE outbox_leases (
    destination text   PRIMARY KEY,
    owner       text   NOT NULL,
    expires_at  bigint NOT NULL
);

-- Privacy Pass tokens redeemed (docs/protocol.md 3.6), each accepted once
-- by whichever process sees it first: the key that signed a token (its
-- token_key_id, SHA-256 of the key) and the token's nonce.
CREATE TABLE spent_tokens (
    token_key_id bytea  NOT NULL,
    nonce        bytea  NOT NULL,
    spent_at     bigint NOT NULL,
    PRIMARY KEY (token_key_id, nonce)
);
