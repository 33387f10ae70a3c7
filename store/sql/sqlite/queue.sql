-- Named queries of store.queue.sqlite. Timestamps are epoch microseconds; :now is passed
-- in by the caller so that one operation uses one clock reading. Lists of ids or rows
-- arrive as one JSON array parameter and are read with json_each, so that a batch costs
-- one statement, not one per row. casefold() is Python's str.casefold, registered by
-- store.db.sqlite, because SQLite's lower() folds ASCII letters only.

-- ---------------------------------------------------------------------------- producing

-- name: ensure_queues
INSERT OR IGNORE INTO queues (name) SELECT value FROM json_each(:names)

-- name: insert_tasks
-- Inserted in array order, so ids follow input order.
INSERT INTO tasks (
    queue, handler, payload, priority, run_at, state, attempts, max_attempts, retry, key,
    created_at, updated_at
)
SELECT
    json_extract(j.value, '$.queue'),
    json_extract(j.value, '$.handler'),
    json_extract(j.value, '$.payload'),
    json_extract(j.value, '$.priority'),
    json_extract(j.value, '$.run_at'),
    'waiting',
    0,
    json_extract(j.value, '$.max_attempts'),
    json_extract(j.value, '$.retry'),
    json_extract(j.value, '$.key'),
    :now,
    :now
FROM json_each(:tasks) AS j
ORDER BY j.key
RETURNING *

-- name: task_by_key
SELECT * FROM tasks WHERE key = :key

-- name: replace_waiting
UPDATE tasks
SET queue = :queue,
    handler = :handler,
    payload = :payload,
    priority = :priority,
    run_at = CASE WHEN :preserve_run_at THEN run_at ELSE :run_at END,
    max_attempts = :max_attempts,
    retry = :retry,
    -- A replaced task starts afresh, as graphile_worker's replace does.
    attempts = 0,
    last_error = NULL,
    updated_at = :now
WHERE id = :id AND state = 'waiting'
RETURNING *

-- name: clear_key
-- A dead task keeps the key it loses in released_key (delete_dead_by_key finds it there).
UPDATE tasks
SET released_key = CASE WHEN state = 'dead' THEN key ELSE released_key END,
    key = NULL, updated_at = :now
WHERE id = :id

-- ---------------------------------------------------------------------------- consuming

-- name: claimable_queues
-- Queues with a ready task that are not paused; running is only counted where a
-- concurrency limit makes it matter. The loop is over the small queues table; the probe
-- per queue is one seek in tasks_ready (queue = ? AND run_at <= :now), so a queue whose
-- tasks are all scheduled in the future costs nothing however many it holds. INDEXED BY
-- pins the plans: without sqlite_stat1 SQLite cannot tell the two indexes apart.
SELECT q.name,
       coalesce(q.weight, q.default_weight) AS weight,
       q.concurrency_limit,
       CASE WHEN q.concurrency_limit IS NULL THEN 0
            ELSE (SELECT count(*) FROM tasks AS r WHERE r.state = 'running' AND r.queue = q.name)
       END AS running
FROM queues AS q
WHERE q.paused = 0
  AND NOT EXISTS (
      SELECT 1 FROM queue_settings WHERE key = 'global_paused' AND value = 'true'
  )
  AND (:queues IS NULL OR q.name IN (SELECT value FROM json_each(:queues)))
  AND EXISTS (
      SELECT 1 FROM tasks AS t INDEXED BY tasks_ready
      WHERE t.state = 'waiting' AND t.queue = q.name AND t.run_at <= :now
  )

-- name: claim_from_queue
-- Walks tasks_claim in claim order and stops after :limit rows. Left to itself, SQLite
-- prefers tasks_ready (queue = ? AND run_at <= ?) and sorts every ready task of the queue.
UPDATE tasks
SET state = 'running',
    attempts = attempts + 1,
    lease_owner = :worker,
    lease_expires_at = :expires,
    updated_at = :now
WHERE id IN (
    SELECT id FROM tasks INDEXED BY tasks_claim
    WHERE state = 'waiting' AND queue = :queue AND run_at <= :now
    ORDER BY priority, run_at, id
    LIMIT :limit
)
RETURNING *

-- name: delete_completed
DELETE FROM tasks
WHERE id IN (SELECT value FROM json_each(:ids))
  AND state = 'running' AND lease_owner = :worker AND key IS NULL
RETURNING queue

-- name: mark_done
-- Keyed tasks stay as done so that dedupe still finds their key.
UPDATE tasks
SET state = 'done', done_at = :now, updated_at = :now,
    lease_owner = NULL, lease_expires_at = NULL
WHERE id IN (SELECT value FROM json_each(:ids))
  AND state = 'running' AND lease_owner = :worker AND key IS NOT NULL
RETURNING queue

-- name: fenced_lookup
-- The tasks a fenced completion names, with what classifies them (store.queue.fencing).
SELECT id, queue, key, state, lease_owner, attempts, last_error FROM tasks
WHERE id IN (SELECT value FROM json_each(:ids))

-- name: delete_settled
DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(:ids)) AND key IS NULL

-- name: mark_settled
UPDATE tasks
SET state = 'done', done_at = :now, updated_at = :now, lease_owner = NULL,
    lease_expires_at = NULL, dead_at = NULL,
    last_error = coalesce(json_extract(:notes, '$."' || id || '"'), last_error)
WHERE id IN (SELECT value FROM json_each(:ids)) AND key IS NOT NULL

-- name: count_completed
UPDATE queues
SET completed = completed + c.n
FROM (SELECT key AS name, value AS n FROM json_each(:counts)) AS c
WHERE queues.name = c.name

-- name: count_failed
UPDATE queues
SET failed = failed + c.n
FROM (SELECT key AS name, value AS n FROM json_each(:counts)) AS c
WHERE queues.name = c.name

-- name: fail_tasks
UPDATE tasks
SET state = CASE WHEN f.retry_at IS NULL THEN 'dead' ELSE 'waiting' END,
    run_at = coalesce(f.retry_at, tasks.run_at),
    dead_at = CASE WHEN f.retry_at IS NULL THEN :now END,
    last_error = f.error,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
FROM (
    SELECT json_extract(value, '$.id') AS id,
           json_extract(value, '$.error') AS error,
           json_extract(value, '$.retry_at') AS retry_at,
           json_extract(value, '$.attempt') AS attempt
    FROM json_each(:failures)
) AS f
WHERE tasks.id = f.id AND tasks.state = 'running' AND tasks.lease_owner = :worker
  AND (f.attempt IS NULL OR tasks.attempts = f.attempt)
RETURNING queue

-- name: release_tasks
-- The interrupted attempt is not counted; min() keeps the task's place in claim order.
UPDATE tasks
SET state = 'waiting',
    run_at = min(run_at, :now),
    attempts = max(attempts - 1, 0),
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
  AND state = 'running' AND lease_owner = :worker

-- name: release_worker_tasks
UPDATE tasks
SET state = 'waiting',
    run_at = min(run_at, :now),
    attempts = max(attempts - 1, 0),
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE state = 'running' AND lease_owner = :worker

-- name: renew_leases
UPDATE tasks SET lease_expires_at = :expires WHERE state = 'running' AND lease_owner = :worker

-- name: touch_worker
UPDATE workers SET heartbeat_at = :now WHERE worker_id = :worker

-- name: reclaim_expired
-- The attempt that lost its lease counts; with none left the task is dead-lettered.
UPDATE tasks
SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'waiting' END,
    run_at = min(run_at, :now),
    dead_at = CASE WHEN attempts >= max_attempts THEN :now END,
    last_error = 'lease of worker ' || lease_owner || ' expired',
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE state = 'running' AND lease_expires_at < :now
RETURNING state

-- name: reclaim_owned
-- As reclaim_expired, for the tasks of workers that stopped heartbeating.
UPDATE tasks
SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'waiting' END,
    run_at = min(run_at, :now),
    dead_at = CASE WHEN attempts >= max_attempts THEN :now END,
    last_error = 'lease of worker ' || lease_owner || ' lost: worker stopped heartbeating',
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE state = 'running' AND lease_owner IN (SELECT value FROM json_each(:owners))
RETURNING state

-- ---------------------------------------------------------------------------- tasks

-- name: get_task
SELECT * FROM tasks WHERE id = :id

-- name: count_tasks
SELECT count(*) FROM tasks
WHERE (:queue IS NULL OR queue = :queue)
  AND (:handler IS NULL OR handler = :handler)
  AND (:state IS NULL OR :state = CASE
          WHEN state <> 'waiting' THEN state
          WHEN run_at <= :now THEN 'ready'
          ELSE 'scheduled' END)
  AND (:search IS NULL
       OR instr(casefold(handler), :search) > 0
       OR instr(casefold(key), :search) > 0
       OR instr(casefold(last_error), :search) > 0
       OR instr(casefold(payload), :search) > 0)

-- name: count_tasks_capped
-- count_tasks, counting at most :cap tasks.
SELECT count(*) FROM (
  SELECT 1 FROM tasks
  WHERE (:queue IS NULL OR queue = :queue)
    AND (:handler IS NULL OR handler = :handler)
    AND (:state IS NULL OR :state = CASE
            WHEN state <> 'waiting' THEN state
            WHEN run_at <= :now THEN 'ready'
            ELSE 'scheduled' END)
    AND (:search IS NULL
         OR instr(casefold(handler), :search) > 0
         OR instr(casefold(key), :search) > 0
         OR instr(casefold(last_error), :search) > 0
         OR instr(casefold(payload), :search) > 0)
  LIMIT :cap
)

-- name: list_tasks
SELECT * FROM tasks
WHERE (:queue IS NULL OR queue = :queue)
  AND (:handler IS NULL OR handler = :handler)
  AND (:state IS NULL OR :state = CASE
          WHEN state <> 'waiting' THEN state
          WHEN run_at <= :now THEN 'ready'
          ELSE 'scheduled' END)
  AND (:search IS NULL
       OR instr(casefold(handler), :search) > 0
       OR instr(casefold(key), :search) > 0
       OR instr(casefold(last_error), :search) > 0
       OR instr(casefold(payload), :search) > 0)
ORDER BY id
LIMIT :limit OFFSET :offset

-- name: cancel_waiting
DELETE FROM tasks WHERE id = :id AND state = 'waiting' RETURNING *

-- name: delete_task
DELETE FROM tasks WHERE id = :id

-- name: purge_done
DELETE FROM tasks WHERE state = 'done' AND done_at < :before

-- ---------------------------------------------------------------------------- dead letters

-- name: count_dead
SELECT count(*) FROM tasks
WHERE state = 'dead'
  AND (:queue IS NULL OR queue = :queue)
  AND (:handler IS NULL OR handler = :handler)
  AND (:dead_before IS NULL OR dead_at < :dead_before)
  AND (:dead_after IS NULL OR dead_at >= :dead_after)
  AND (:search IS NULL
       OR instr(casefold(handler), :search) > 0
       OR instr(casefold(key), :search) > 0
       OR instr(casefold(last_error), :search) > 0
       OR instr(casefold(payload), :search) > 0)

-- name: list_dead
SELECT * FROM tasks
WHERE state = 'dead'
  AND (:queue IS NULL OR queue = :queue)
  AND (:handler IS NULL OR handler = :handler)
  AND (:dead_before IS NULL OR dead_at < :dead_before)
  AND (:dead_after IS NULL OR dead_at >= :dead_after)
  AND (:search IS NULL
       OR instr(casefold(handler), :search) > 0
       OR instr(casefold(key), :search) > 0
       OR instr(casefold(last_error), :search) > 0
       OR instr(casefold(payload), :search) > 0)
ORDER BY dead_at DESC, id DESC
LIMIT :limit OFFSET :offset

-- name: oldest_dead_ids
SELECT id FROM tasks
WHERE state = 'dead'
  AND (:queue IS NULL OR queue = :queue)
  AND (:handler IS NULL OR handler = :handler)
  AND (:dead_before IS NULL OR dead_at < :dead_before)
  AND (:dead_after IS NULL OR dead_at >= :dead_after)
  AND (:search IS NULL
       OR instr(casefold(handler), :search) > 0
       OR instr(casefold(key), :search) > 0
       OR instr(casefold(last_error), :search) > 0
       OR instr(casefold(payload), :search) > 0)
ORDER BY dead_at, id
LIMIT :limit

-- name: replay_dead
UPDATE tasks
SET state = 'waiting',
    attempts = 0,
    run_at = :now,
    dead_at = NULL,
    replayed_by = :actor,
    replayed_at = :now,
    replay_count = replay_count + 1,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'dead'
RETURNING id

-- name: delete_dead
DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'dead'

-- name: delete_dead_by_key
DELETE FROM tasks WHERE state = 'dead' AND (key = :key OR released_key = :key)

-- name: purge_dead
DELETE FROM tasks WHERE state = 'dead' AND dead_at < :before

-- name: dead_stats
SELECT 'queue' AS kind, queue AS name, count(*) AS n,
       min(dead_at) AS oldest, max(dead_at) AS newest
FROM tasks WHERE state = 'dead' GROUP BY queue
UNION ALL
SELECT 'handler', handler, count(*), min(dead_at), max(dead_at)
FROM tasks WHERE state = 'dead' GROUP BY handler

-- ---------------------------------------------------------------------------- queues

-- name: queue_infos
-- Every queue (or the one named), with its task counts by state.
SELECT q.name, q.paused, q.weight, q.default_weight, q.concurrency_limit,
       q.completed, q.failed,
       coalesce(c.ready, 0) AS ready,
       coalesce(c.scheduled, 0) AS scheduled,
       coalesce(c.running, 0) AS running,
       coalesce(c.dead, 0) AS dead
FROM queues AS q
LEFT JOIN (
    SELECT queue,
           sum(state = 'waiting' AND run_at <= :now) AS ready,
           sum(state = 'waiting' AND run_at > :now) AS scheduled,
           sum(state = 'running') AS running,
           sum(state = 'dead') AS dead
    FROM tasks
    WHERE state <> 'done' AND (:name IS NULL OR queue = :name)
    GROUP BY queue
) AS c ON c.queue = q.name
WHERE :name IS NULL OR q.name = :name
ORDER BY q.name

-- name: set_queue_paused
INSERT INTO queues (name, paused) VALUES (:name, :value)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused

-- name: set_queue_weight
-- A NULL weight drops the override.
INSERT INTO queues (name, weight) VALUES (:name, :value)
ON CONFLICT (name) DO UPDATE SET weight = excluded.weight

-- name: set_queue_concurrency
INSERT INTO queues (name, concurrency_limit) VALUES (:name, :value)
ON CONFLICT (name) DO UPDATE SET concurrency_limit = excluded.concurrency_limit

-- name: set_default_weights
-- :weights is a JSON object {queue: weight}. "WHERE true" resolves the parse ambiguity
-- between INSERT ... SELECT and the upsert clause.
INSERT INTO queues (name, default_weight)
SELECT key, value FROM json_each(:weights) WHERE true
ON CONFLICT (name) DO UPDATE SET default_weight = excluded.default_weight

-- name: set_setting
INSERT INTO queue_settings (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- name: get_setting
SELECT value FROM queue_settings WHERE key = :key

-- ---------------------------------------------------------------------------- workers

-- name: register_worker
INSERT INTO workers (
    worker_id, hostname, pid, concurrency, queues, version, started_at, heartbeat_at
) VALUES (:worker_id, :hostname, :pid, :concurrency, :queues, :version, :now, :now)
ON CONFLICT (worker_id) DO UPDATE
SET hostname = excluded.hostname,
    pid = excluded.pid,
    concurrency = excluded.concurrency,
    queues = excluded.queues,
    version = excluded.version,
    heartbeat_at = excluded.heartbeat_at

-- name: delete_worker
DELETE FROM workers WHERE worker_id = :worker

-- name: delete_stale_workers
DELETE FROM workers WHERE heartbeat_at < :cutoff RETURNING worker_id

-- name: list_workers
SELECT w.*,
       (SELECT count(*) FROM tasks AS t
        WHERE t.state = 'running' AND t.lease_owner = w.worker_id) AS running
FROM workers AS w
ORDER BY w.worker_id

-- ---------------------------------------------------------------------------- operator actions
-- The state checks run in Python (store.queue.operator) inside the same write transaction.

-- name: op_mark_done
UPDATE tasks
SET state = 'done', done_at = :now, dead_at = NULL, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = :now
WHERE id = :id
RETURNING *

-- name: op_fail
UPDATE tasks
SET state = 'dead', dead_at = :now, last_error = :reason, updated_at = :now
WHERE id = :id
RETURNING *

-- name: op_run_now
UPDATE tasks SET run_at = min(run_at, :now), updated_at = :now WHERE id = :id RETURNING *

-- name: op_reschedule
UPDATE tasks
SET run_at = coalesce(:run_at, run_at),
    priority = coalesce(:priority, priority),
    attempts = coalesce(:attempts, attempts),
    max_attempts = coalesce(:max_attempts, max_attempts),
    retry = CASE WHEN :max_attempts IS NULL THEN retry
                 ELSE json_set(retry, '$.maxAttempts', :max_attempts) END,
    updated_at = :now
WHERE id = :id
RETURNING *

-- name: op_owned
SELECT id, lease_owner FROM tasks
WHERE state = 'running' AND lease_owner IN (SELECT value FROM json_each(:owners))
ORDER BY id

-- name: op_release_owned
UPDATE tasks
SET state = 'waiting',
    run_at = min(run_at, :now),
    attempts = max(attempts - 1, 0),
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE state = 'running' AND lease_owner IN (SELECT value FROM json_each(:owners))

-- name: dead_preview
-- The queues of the tasks oldest_dead_ids would pick (:limit -1 = no limit).
SELECT queue, count(*) AS n FROM (
    SELECT queue FROM tasks
    WHERE state = 'dead'
      AND (:queue IS NULL OR queue = :queue)
      AND (:handler IS NULL OR handler = :handler)
      AND (:dead_before IS NULL OR dead_at < :dead_before)
      AND (:dead_after IS NULL OR dead_at >= :dead_after)
      AND (:search IS NULL
           OR instr(casefold(handler), :search) > 0
           OR instr(casefold(key), :search) > 0
           OR instr(casefold(last_error), :search) > 0
           OR instr(casefold(payload), :search) > 0)
    ORDER BY dead_at, id
    LIMIT :limit
)
GROUP BY queue
ORDER BY queue

-- name: gc_queues
DELETE FROM queues
WHERE paused = 0 AND weight IS NULL AND default_weight = 1 AND concurrency_limit IS NULL
  AND NOT EXISTS (SELECT 1 FROM tasks AS t WHERE t.queue = queues.name)
RETURNING name
