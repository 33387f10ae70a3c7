-- Named queries of store.schedules.postgres. Times come from the database clock (now());
-- every change also runs bump_version in its transaction, whose NOTIFY is delivered to
-- every listening scheduler when the transaction commits.

-- name: upsert_schedule
-- SET expressions read the row as it was, so "schedules.paused AND NOT excluded.paused"
-- is a resume. The row lock of ON CONFLICT serialises concurrent saves of one name; a
-- returned revision of 1 means the row was created.
INSERT INTO schedules (
    name, spec, timezone, factory, payload, paused, durable, overlap_policy,
    misfire_grace_seconds, catch_up, revision
) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, 1)
ON CONFLICT (name) DO UPDATE SET
    spec = excluded.spec,
    timezone = excluded.timezone,
    factory = excluded.factory,
    payload = excluded.payload,
    resumed_at = CASE WHEN schedules.paused AND NOT excluded.paused THEN now()
                      ELSE schedules.resumed_at END,
    paused = excluded.paused,
    durable = excluded.durable,
    overlap_policy = excluded.overlap_policy,
    misfire_grace_seconds = excluded.misfire_grace_seconds,
    catch_up = excluded.catch_up,
    revision = schedules.revision + 1,
    updated_at = now()
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE name = $1;

-- name: list_schedules
SELECT * FROM schedules ORDER BY name LIMIT $1 OFFSET $2;

-- name: list_all_schedules
SELECT * FROM schedules ORDER BY name;

-- name: count_schedules
SELECT count(*) FROM schedules;

-- name: delete_schedule
DELETE FROM schedules WHERE name = $1 RETURNING name;

-- name: set_paused
UPDATE schedules SET
    resumed_at = CASE WHEN paused AND NOT $2 THEN now() ELSE resumed_at END,
    paused = $2,
    updated_at = now()
WHERE name = $1
RETURNING *;

-- name: set_all_paused
UPDATE schedules_state SET
    all_resumed_at = CASE WHEN all_paused AND NOT $1 THEN now() ELSE all_resumed_at END,
    all_paused = $1
WHERE id = 1;

-- name: bump_version
WITH bumped AS (
    UPDATE schedules_state SET version = version + 1 WHERE id = 1 RETURNING version
)
SELECT pg_notify('longshore_schedules', bumped.version::text) FROM bumped;

-- name: get_state
SELECT version, all_paused, all_resumed_at FROM schedules_state WHERE id = 1;

-- name: record_firing
-- last_fire_time only moves forwards (greatest() ignores NULL): a late writer (a second
-- leader for a moment, a catch-up racing a tick) never moves it back.
UPDATE schedules SET
    last_fire_time = greatest(last_fire_time, $2),
    last_task_id = coalesce($3, last_task_id)
WHERE name = $1
RETURNING name;

-- name: try_leader_lock
SELECT pg_try_advisory_lock($1);

-- name: name_leader
-- The leader's session names itself, so that every process can tell who leads.
SELECT set_config('application_name', $1, false);

-- name: leader_name
-- The session holding the leadership lock in this database, by the name it gave itself. A
-- bigint advisory key shows in pg_locks as classid (its high 32 bits), objid (its low 32
-- bits) and objsubid 1.
SELECT a.application_name
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.granted
  AND l.objsubid = 1
  AND l.classid = ($1::bigint >> 32)::oid
  AND l.objid = ($1::bigint & 4294967295)::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1;

-- name: ping
SELECT 1;

-- name: record_firings
-- record_firing for many schedules at once: $1..$3 are parallel arrays, one entry per name
-- (the caller merges several firings of one name first).
UPDATE schedules AS s SET
    last_fire_time = greatest(s.last_fire_time, f.fire_time),
    last_task_id = coalesce(f.task_id, s.last_task_id)
FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) AS f(name, fire_time, task_id)
WHERE s.name = f.name
RETURNING s.name;

-- name: last_tasks
-- The latest task of each named schedule; 'waiting' reads as ready or scheduled by run_at.
SELECT s.name, t.id AS task_id,
       CASE WHEN t.state <> 'waiting' THEN t.state
            WHEN t.run_at > now() THEN 'scheduled'
            ELSE 'ready' END AS state
FROM schedules AS s
JOIN tasks AS t ON t.id = s.last_task_id
WHERE s.name = ANY($1::text[]);
