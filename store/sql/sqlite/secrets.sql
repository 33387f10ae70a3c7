-- Statements of store.secrets.sqlite. Values are sealed (AES-GCM) before they get here.

-- name: put_secret
INSERT INTO secrets (name, ciphertext, created_at, updated_at)
VALUES (:name, :ciphertext, :now, :now)
ON CONFLICT (name) DO UPDATE SET
    ciphertext = excluded.ciphertext,
    updated_at = excluded.updated_at
RETURNING name, length(ciphertext) AS sealed_bytes, created_at, updated_at

-- name: list_secrets
SELECT name, length(ciphertext) AS sealed_bytes, created_at, updated_at
FROM secrets ORDER BY name

-- name: secrets_named
SELECT name, ciphertext FROM secrets WHERE name IN (SELECT value FROM json_each(:names))

-- name: delete_secret
DELETE FROM secrets WHERE name = :name
