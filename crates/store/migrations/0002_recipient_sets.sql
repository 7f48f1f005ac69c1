-- mimid store, schema version 2: recipient lists stored once.
-- Consecutive messages of a group go to the same recipients on the same
-- destinations, so a job refers to its recipient list by hash instead of
-- carrying a copy of it.

-- One row per distinct recipient list; `hash` is the SHA-256 of
-- `recipients`. A row is removed with the last job that refers to it.
CREATE TABLE recipient_sets (
    hash       BLOB PRIMARY KEY NOT NULL,
    recipients BLOB NOT NULL
);

-- Jobs written from now on have `recipients = x''` and the hash of their
-- list here; jobs written before (NULL here) keep their own `recipients`.
ALTER TABLE jobs ADD COLUMN recipient_set BLOB NULL;

-- complete_job ("does another job still refer to this recipient list?").
CREATE INDEX jobs_by_recipient_set ON jobs (recipient_set);
