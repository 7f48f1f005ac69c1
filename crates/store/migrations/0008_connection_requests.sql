-- mimid store, schema version 8: connection requests (docs/protocol.md 7)
-- waiting for a user of this provider to accept or decline them, and the
-- requesters users have blocked.

-- A request to connect, with the Welcome into its connection group; every
-- client of `recipient_user` sees it until the user settles it. Repeats
-- are told apart by `inbound`, as deliveries are.
CREATE TABLE connection_requests (
    id             INTEGER PRIMARY KEY,
    sender         TEXT    NOT NULL,
    sender_user    TEXT    NOT NULL,
    recipient_user TEXT    NOT NULL,
    group_id       BLOB    NOT NULL,
    epoch          INTEGER NOT NULL,
    welcome        BLOB    NOT NULL,
    received_at    INTEGER NOT NULL
);
CREATE INDEX connection_requests_by_user ON connection_requests (recipient_user, id);

-- `user_id` (this provider's) refuses connection requests from `peer`.
CREATE TABLE blocks (
    user_id TEXT    NOT NULL,
    peer    TEXT    NOT NULL,
    since   INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer)
);
