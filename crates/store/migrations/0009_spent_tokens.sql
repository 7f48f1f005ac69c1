-- mimid store, schema version 9: Privacy Pass tokens redeemed
-- (docs/protocol.md 3.6), each accepted once: the key that signed a token
-- (its token_key_id, SHA-256 of the key) and the token's nonce.
CREATE TABLE spent_tokens (
    token_key_id BLOB    NOT NULL,
    nonce        BLOB    NOT NULL,
    spent_at     INTEGER NOT NULL,
    PRIMARY KEY (token_key_id, nonce)
) WITHOUT ROWID;
