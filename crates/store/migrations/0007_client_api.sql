-- mimid store, schema version 7: clients of the client API
-- (docs/client-api.md). A client enrols for a user with a one-time secret
-- the operator handed out, and is from then on known by its request
-- signing key.

-- The Ed25519 public key a client signs its requests with (NULL for a
-- client added without the client API).
ALTER TABLE clients ADD COLUMN public_key BLOB;

-- Enrolment secrets, by their SHA-256 (the secret itself is never
-- stored): good for one client of `user_id` until `expires_at`.
CREATE TABLE enrolments (
    secret_sha256 BLOB    PRIMARY KEY NOT NULL,
    user_id       TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
