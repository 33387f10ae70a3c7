-- Statements of store.secrets.postgres. Values are sealed (AES-GCM) before they get here.

-- name: put_secret
INSERT INTO secrets (name, ciphertext) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = now()
RETURNING name, length(ciphertext) AS sealed_bytes, created_at, updated_at,
    (xmax = 0) AS created;

-- name: list_secrets
SELECT name, length(ciphertext) AS sealed_bytes, created_at, updated_at
FROM secrets ORDER BY name;

-- name: secrets_named
SELECT name, ciphertext FROM secrets WHERE name = ANY ($1::text[]);

-- name: delete_secret
DELETE FROM secrets WHERE name = $1 RETURNING name;
