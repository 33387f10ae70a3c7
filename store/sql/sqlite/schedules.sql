-- Named queries of store.schedules.sqlite. Times are epoch microseconds from the process
-- clock (:now); every change also runs bump_version in its transaction.

-- name: upsert_schedule
-- SET expressions read the row as it was, so "schedules.paused AND NOT excluded.paused"
-- is a resume. A returned revision of 1 means the row was created.
INSERT INTO schedules (
    name, spec, timezone, factory, payload, paused, durable, overlap_policy,
    misfire_grace_seconds, catch_up, revision, created_at, updated_at
) VALUES (
    :name, :spec, :timezone, :factory, :payload, :paused, :durable, :overlap_policy,
    :misfire_grace_seconds, :catch_up, 1, :now, :now
)
ON CONFLICT (name) DO UPDATE SET
    spec = excluded.spec,
    timezone = excluded.timezone,
    factory = excluded.factory,
    payload = excluded.payload,
    resumed_at = CASE WHEN schedules.paused AND NOT excluded.paused THEN :now
                      ELSE schedules.resumed_at END,
    paused = excluded.paused,
    durable = excluded.durable,
    overlap_policy = excluded.overlap_policy,
    misfire_grace_seconds = excluded.misfire_grace_seconds,
    catch_up = excluded.catch_up,
    revision = schedules.revision + 1,
    updated_at = :now
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE name = :name;

-- name: list_schedules
SELECT * FROM schedules ORDER BY name LIMIT :limit OFFSET :offset;

-- name: list_all_schedules
SELECT * FROM schedules ORDER BY name;

-- name: count_schedules
SELECT count(*) FROM schedules;

-- name: delete_schedule
DELETE FROM schedules WHERE name = :name;

-- name: set_paused
UPDATE schedules SET
    resumed_at = CASE WHEN paused AND NOT :paused THEN :now ELSE resumed_at END,
    paused = :paused,
    updated_at = :now
WHERE name = :name
RETURNING *;

-- name: set_all_paused
UPDATE schedules_state SET
    all_resumed_at = CASE WHEN all_paused AND NOT :paused THEN :now ELSE all_resumed_at END,
    all_paused = :paused
WHERE id = 1;

-- name: bump_version
UPDATE schedules_state SET version = version + 1 WHERE id = 1;

-- name: get_state
SELECT version, all_paused, all_resumed_at FROM schedules_state WHERE id = 1;

-- name: record_firing
-- last_fire_time only moves forwards: a late writer (a second leader for a moment, a
-- catch-up racing a tick) never moves it back.
UPDATE schedules SET
    last_fire_time = CASE
        WHEN :fire_time IS NULL THEN last_fire_time
        WHEN last_fire_time IS NULL OR last_fire_time < :fire_time THEN :fire_time
        ELSE last_fire_time END,
    last_task_id = coalesce(:task_id, last_task_id)
WHERE name = :name;

-- name: last_tasks
-- The latest task of each named schedule (:names is a JSON array of names); 'waiting'
-- reads as ready or scheduled by run_at.
SELECT s.name AS name, t.id AS task_id,
       CASE WHEN t.state <> 'waiting' THEN t.state
            WHEN t.run_at > :now THEN 'scheduled'
            ELSE 'ready' END AS state
FROM schedules AS s
JOIN tasks AS t ON t.id = s.last_task_id
WHERE s.name IN (SELECT value FROM json_each(:names));
