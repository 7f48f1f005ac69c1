-- mimid store, schema version 6: the provider's users, the KeyPackages its
-- clients publish, and the connections its users accepted
-- (docs/protocol.md 9).

-- The provider's users. A client belongs to one (`clients.user_id`); a
-- user may have no client yet.
CREATE TABLE users (
    user_id    TEXT    PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO users (user_id, created_at)
    SELECT user_id, MIN(created_at) FROM clients GROUP BY user_id;

-- KeyPackages published by the provider's clients, validated on the way
-- in. `kind` 0 is a regular KeyPackage, 1 a connection KeyPackage; a
-- one-time package is handed out once (`claimed` 1, kept until pruned),
-- a last-resort one whenever no one-time package of its kind is left.
CREATE TABLE key_packages (
    id           INTEGER PRIMARY KEY,
    client_id    TEXT    NOT NULL,
    kind         INTEGER NOT NULL,
    last_resort  INTEGER NOT NULL,
    not_after    INTEGER NOT NULL,
    key_package  BLOB    NOT NULL,
    published_at INTEGER NOT NULL,
    claimed      INTEGER NOT NULL DEFAULT 0
);
-- The next package of a client's kind: the oldest unclaimed one-time, or
-- the newest last-resort.
CREATE INDEX key_packages_by_client ON key_packages (client_id, kind, last_resort, claimed, id);

-- What each request for KeyPackages was handed (read back by its token
-- once the transaction that chose them has committed), pruned with the
-- claimed packages.
CREATE TABLE key_package_claims (
    token          BLOB    NOT NULL,
    client_id      TEXT    NOT NULL,
    key_package_id INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (token, client_id)
);

-- A connection of `user_id` (this provider's) with `peer` (a user of any
-- provider): `user_id` accepted `peer`'s request, or asked `peer` itself.
-- Only then does `/group_key_packages` serve `user_id`'s packages to `peer`.
CREATE TABLE connections (
    user_id TEXT    NOT NULL,
    peer    TEXT    NOT NULL,
    since   INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer)
);
