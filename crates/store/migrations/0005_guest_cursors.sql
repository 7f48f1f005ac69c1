-- mimid store, schema version 5: client queues as cursors over the inbox.
-- Version 4 wrote one `client_queue` row per recipient of a delivery, and
-- its index `(client_id, seq)` put each on a page of its own: a delivery to
-- 33 clients wrote 57 pages (229 KB) of log (docs/performance.md). Now a
-- delivery writes its message once with the id of its recipient set (a
-- group's consecutive messages share one), and each client's queue is the
-- inbox rows of its sets after its acknowledged position: 8 pages.

-- Each distinct set of recipient clients, once; `hash` is the SHA-256 of
-- the sorted, distinct client ids, each followed by a zero byte (the sets
-- made from version 4's queues below have as hash their message's inbox
-- id in decimal, never 32 bytes long, so no SHA-256 equals one).
CREATE TABLE guest_sets (
    id         INTEGER PRIMARY KEY,
    hash       BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- The clients of each set. Both orders are read: a client's sets (its
-- queue) and a set's clients (who has yet to acknowledge its messages).
CREATE TABLE guest_set_members (
    set_id    INTEGER NOT NULL REFERENCES guest_sets (id),
    client_id TEXT    NOT NULL,
    PRIMARY KEY (set_id, client_id)
) WITHOUT ROWID;
CREATE INDEX guest_set_members_by_client ON guest_set_members (client_id, set_id);

-- How far each client has acknowledged its queue: every inbox row of its
-- sets with an id up to `acked` is read. No row: nothing acknowledged.
CREATE TABLE client_cursors (
    client_id TEXT    PRIMARY KEY NOT NULL,
    acked     INTEGER NOT NULL
) WITHOUT ROWID;

-- The recipients of each inbox row; a client's queue reads its sets' rows
-- in id order, which is arrival order, which is hub order per group.
ALTER TABLE inbox ADD COLUMN recipient_set INTEGER NULL REFERENCES guest_sets (id);
CREATE INDEX inbox_by_set ON inbox (recipient_set, id);

-- What version 4 had queued and not acknowledged: one set per inbox row,
-- of the clients still holding it. Queue positions were `client_queue.seq`
-- and are inbox ids from now on, so a client reads its queue again from 0
-- (it holds exactly what it had not acknowledged).
INSERT INTO guest_sets (id, hash, created_at)
SELECT i.id, CAST(printf('%08d', i.id) AS BLOB), i.received_at
FROM inbox i WHERE EXISTS (SELECT 1 FROM client_queue q WHERE q.inbox_id = i.id);

INSERT OR IGNORE INTO guest_set_members (set_id, client_id)
SELECT inbox_id, client_id FROM client_queue;

UPDATE inbox SET recipient_set = id WHERE id IN (SELECT id FROM guest_sets);

-- Inbox rows no queue held were on their way out.
DELETE FROM inbox WHERE recipient_set IS NULL;

DROP TABLE client_queue;
