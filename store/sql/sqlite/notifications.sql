-- name: upsert_rule
INSERT INTO notification_rules (name, body, created_at, updated_at)
VALUES (:name, :body, :now, :now)
ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at
RETURNING name, body, created_at, updated_at, created_at = updated_at AS created;

-- name: get_rule
SELECT name, body, created_at, updated_at FROM notification_rules WHERE name = :name;

-- name: list_rules
SELECT name, body, created_at, updated_at FROM notification_rules ORDER BY name;

-- name: delete_rule
DELETE FROM notification_rules WHERE name = :name;

-- name: reseal_rule
UPDATE notification_rules SET body = :body WHERE name = :name;

-- name: secure_delete_on
PRAGMA secure_delete = ON;

-- name: secure_delete_off
PRAGMA secure_delete = OFF;
