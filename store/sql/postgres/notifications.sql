-- name: upsert_rule
INSERT INTO notification_rules (name, body, created_at, updated_at)
VALUES ($1, $2, now(), now())
ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = clock_timestamp()
RETURNING name, body, created_at, updated_at, (xmax = 0) AS created;

-- name: get_rule
SELECT name, body, created_at, updated_at FROM notification_rules WHERE name = $1;

-- name: list_rules
SELECT name, body, created_at, updated_at FROM notification_rules ORDER BY name;

-- name: delete_rule
DELETE FROM notification_rules WHERE name = $1 RETURNING name;

-- name: reseal_rule
UPDATE notification_rules SET body = $2 WHERE name = $1 AND body = $3 RETURNING name;
