-- Secrets and typed parameters. secrets holds each secret's value encrypted (AES-GCM:
-- a 12-byte nonce then the ciphertext and tag; the name is the associated data), never
-- the value itself. A job definition names the secrets it is granted (a JSON array of
-- {name, env} or {name, file}) and declares its parameters (a JSON array of parameter
-- specs); a run records the parameter values it was given (a JSON object; NULL: not yet
-- resolved, or a run from before this migration).
CREATE TABLE secrets (
    name       TEXT    PRIMARY KEY,
    ciphertext BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE job_definitions ADD COLUMN secrets TEXT NOT NULL DEFAULT '[]';
ALTER TABLE job_definitions ADD COLUMN params TEXT NOT NULL DEFAULT '[]';
ALTER TABLE runs ADD COLUMN params TEXT;
