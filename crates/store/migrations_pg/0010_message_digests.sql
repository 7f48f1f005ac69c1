-- mimid store on PostgreSQL, schema version 10 (as SQLite's): the
-- application messages a hub has accepted (docs/protocol.md 6.3), by the
-- SHA-256 of their MLSMessage bytes, so that a repeat (a relay retrying
-- after a lost answer, or a replay under a fresh provider signature) is
-- answered without being fanned out again. Of two processes inserting one
-- digest, the second waits for the first to commit and then finds it.
-- Keyed by epoch before digest: a commit drops the epochs the hub no
-- longer accepts with one range of the key, and a deleted group all of
-- its rows.
CREATE TABLE message_digests (
    group_id bytea  NOT NULL,
    epoch    bigint NOT NULL,
    digest   bytea  NOT NULL,
    PRIMARY KEY (group_id, epoch, digest)
);
