-- mimid store, schema version 1.
-- All times are seconds since the Unix epoch. Group ids, message ids,
-- states, snapshots, bodies and recipient lists are opaque blobs.

-- One row per group slot: a reservation or an active group.
-- `version` increments with every committed step that writes the slot.
CREATE TABLE groups (
    group_id       BLOB    PRIMARY KEY NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    state          BLOB    NOT NULL,
    reserved_until INTEGER NULL,
    updated_at     INTEGER NOT NULL
);

-- What joiners of one epoch need. Pruning ("this group's snapshots created
-- before T") scans only the group's own rows through the primary key prefix,
-- and a group keeps few snapshots, so no index on created_at.
CREATE TABLE snapshots (
    group_id   BLOB    NOT NULL,
    epoch      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    PRIMARY KEY (group_id, epoch)
);

-- A message is stored once, however many jobs (destinations) deliver it.
-- It outlives its group (deleting a group does not drop undelivered mail);
-- it is removed with the last job that refers to it.
CREATE TABLE messages (
    message_id BLOB    PRIMARY KEY NOT NULL,
    group_id   BLOB    NOT NULL,
    body       BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Delivery jobs: one message for the recipients on one destination.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT    NOT NULL,
    message_id  BLOB    NOT NULL REFERENCES messages (message_id),
    recipients  BLOB    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

-- pending_jobs: WHERE destination = ? ORDER BY id LIMIT ?
CREATE INDEX jobs_by_destination ON jobs (destination, id);

-- complete_job ("does another job still refer to this message?") and the
-- foreign-key check when a message row is deleted.
CREATE INDEX jobs_by_message ON jobs (message_id);
