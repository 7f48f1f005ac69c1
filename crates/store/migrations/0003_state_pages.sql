-- mimid store, schema version 3: group states stored in pages.
-- A commit changes a few nodes of a group's tree, so a step writes only
-- the pages of the state that changed (`GroupWrite::Patch`) instead of
-- the whole state (197 KB at 1,000 members).

-- Page `page` of a group's state: bytes [page * 3840, (page + 1) * 3840)
-- (3840 is `mimid_store::STATE_PAGE`). A rowid table, so that a page
-- (about one 4 KiB database page) is stored in its row rather than in
-- overflow pages, and rewriting it rewrites one database page.
CREATE TABLE state_pages (
    group_id BLOB    NOT NULL,
    page     INTEGER NOT NULL CHECK (page >= 0),
    data     BLOB    NOT NULL
);
CREATE UNIQUE INDEX state_pages_by_group ON state_pages (group_id, page);

-- From now on `groups.state` is x'' and `state_len` the length of the state
-- in `state_pages` (0 for a reservation).
ALTER TABLE groups ADD COLUMN state_len INTEGER NULL;

INSERT INTO state_pages (group_id, page, data)
WITH RECURSIVE pages (group_id, page, state) AS (
    SELECT group_id, 0, state FROM groups WHERE length(state) > 0
    UNION ALL
    SELECT group_id, page + 1, state FROM pages WHERE (page + 1) * 3840 < length(state)
)
SELECT group_id, page, substr(state, page * 3840 + 1, 3840) FROM pages;

UPDATE groups SET state_len = length(state), state = x'';
