-- Named queries of store.queue.postgres. The heavy lifting of enqueue and claim lives in
-- the PL/pgSQL functions of migrations/001_queue.sql (one round trip each).

-- name: enqueue
-- (task).* flattens the composite: asyncpg decodes composites only in binary format.
-- Payloads and retry policies arrive as JSON text (text[], cast here), so the statement
-- means the same on a connection whose json codecs are not ours (a caller's connection
-- enqueueing inside its own transaction, store.queue.in_transaction).
SELECT ord, outcome, (task).*
FROM longshore_enqueue($1::text[], $2::text[], $3::text[]::jsonb[], $4::integer[],
                       $5::timestamptz[], $6::text[], $7::text[], $8::text[]::jsonb[],
                       $9::integer[], $10::interval);

-- name: claim
SELECT * FROM longshore_claim($1::text, $2::integer, $3::interval, $4::text[]);

-- name: complete
-- Keyless tasks are deleted, keyed ones kept as done so that dedupe still sees them. The
-- lease_owner/state conditions are re-checked after any row lock wait (READ COMMITTED),
-- so a task reclaimed meanwhile is ignored. One counter update per queue.
WITH deleted AS (
    DELETE FROM tasks AS t
    WHERE t.id = ANY ($2::bigint[]) AND t.state = 'running' AND t.lease_owner = $1
      AND t.key IS NULL
    RETURNING t.queue
), finished AS (
    UPDATE tasks AS t
    SET state = 'done', done_at = now(), updated_at = now(), lease_owner = NULL,
        lease_expires_at = NULL
    WHERE t.id = ANY ($2::bigint[]) AND t.state = 'running' AND t.lease_owner = $1
      AND t.key IS NOT NULL
    RETURNING t.queue
), counts AS (
    SELECT queue, count(*) AS n
    FROM (SELECT queue FROM deleted UNION ALL SELECT queue FROM finished) AS x
    GROUP BY queue
), bumped AS (
    UPDATE queues AS q SET completed = q.completed + counts.n
    FROM counts WHERE q.name = counts.queue
)
SELECT COALESCE(sum(n), 0)::integer FROM counts;

-- name: complete_held
-- The common case of complete_fenced: the tasks whose lease ($1 worker, $3 the attempt of
-- each id in $2) is still held are completed as complete does; returns their ids.
WITH deleted AS (
    DELETE FROM tasks AS t
    WHERE t.id = ANY ($2::bigint[]) AND t.state = 'running' AND t.lease_owner = $1
      AND t.key IS NULL AND t.attempts = ($3::integer[])[array_position($2::bigint[], t.id)]
    RETURNING t.id, t.queue
), finished AS (
    UPDATE tasks AS t
    SET state = 'done', done_at = now(), updated_at = now(), lease_owner = NULL,
        lease_expires_at = NULL
    WHERE t.id = ANY ($2::bigint[]) AND t.state = 'running' AND t.lease_owner = $1
      AND t.key IS NOT NULL AND t.attempts = ($3::integer[])[array_position($2::bigint[], t.id)]
    RETURNING t.id, t.queue
), done AS (
    SELECT id, queue FROM deleted UNION ALL SELECT id, queue FROM finished
), counts AS (
    SELECT queue, count(*) AS n FROM done GROUP BY queue
), bumped AS (
    UPDATE queues AS q SET completed = q.completed + counts.n
    FROM counts WHERE q.name = counts.queue
)
SELECT id FROM done;

-- name: complete_fenced
-- $1 worker, $2 task ids, $3 the attempt number each claim returned. Each task is classified
-- under its row lock (re-evaluated after a lock wait): the lease still held ('written'); the
-- lapse of this very lease is all that happened since (same attempt, last_error naming it:
-- 'taken_from_dlq' / 'taken_from_queue'); claimed again and running ('superseded'); done or
-- deleted ('finished'); anything else is left alone ('ignored'). Settled tasks are deleted
-- (keyless) or kept as done.
WITH req AS (
    SELECT DISTINCT ON (r.id) r.id, r.attempt
    FROM unnest($2::bigint[], $3::integer[]) AS r(id, attempt)
), cur AS (
    SELECT t.id, t.queue, t.key IS NULL AS keyless, req.attempt,
           CASE
               WHEN t.state = 'running' AND t.lease_owner = $1 AND t.attempts = req.attempt
                   THEN 'written'
               WHEN t.state = 'done' THEN 'finished'
               WHEN t.attempts = req.attempt AND t.state IN ('dead', 'waiting')
                    AND starts_with(COALESCE(t.last_error, ''), 'lease of worker ' || $1 || ' ')
                   THEN CASE WHEN t.state = 'dead' THEN 'taken_from_dlq'
                             ELSE 'taken_from_queue' END
               WHEN t.state = 'running' AND t.attempts > req.attempt THEN 'superseded'
               ELSE 'ignored'
           END AS outcome
    FROM tasks AS t JOIN req ON req.id = t.id
    WHERE t.id = ANY ($2::bigint[])
    FOR UPDATE OF t
), deleted AS (
    DELETE FROM tasks AS t USING cur
    WHERE t.id = cur.id AND cur.outcome NOT IN ('ignored', 'finished') AND cur.keyless
    RETURNING t.id
), finished AS (
    UPDATE tasks AS t
    SET state = 'done', done_at = now(), updated_at = now(), lease_owner = NULL,
        lease_expires_at = NULL, dead_at = NULL,
        last_error = CASE WHEN cur.outcome = 'written' THEN t.last_error
                          ELSE format('completed by the late result of attempt %s of worker %s (%s)',
                                      cur.attempt, $1, cur.outcome) END
    FROM cur
    WHERE t.id = cur.id AND cur.outcome NOT IN ('ignored', 'finished') AND NOT cur.keyless
    RETURNING t.id
), counts AS (
    SELECT queue, count(*) AS n FROM cur WHERE outcome NOT IN ('ignored', 'finished')
    GROUP BY queue
), bumped AS (
    UPDATE queues AS q SET completed = q.completed + counts.n
    FROM counts WHERE q.name = counts.queue
)
SELECT req.id, COALESCE(cur.outcome, 'finished') AS outcome
FROM req LEFT JOIN cur ON cur.id = req.id;

-- name: fail
WITH failures AS (
    SELECT DISTINCT ON (f.id) f.id, f.error, f.retry_at, f.attempt
    FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $5::integer[])
        AS f(id, error, retry_at, attempt)
), failed AS (
    UPDATE tasks AS t
    SET state = CASE WHEN f.retry_at IS NULL THEN 'dead' ELSE 'waiting' END,
        run_at = COALESCE(f.retry_at, t.run_at),
        dead_at = CASE WHEN f.retry_at IS NULL THEN now() END,
        last_error = f.error, lease_owner = NULL, lease_expires_at = NULL,
        updated_at = now()
    FROM failures AS f
    WHERE t.id = f.id AND t.state = 'running' AND t.lease_owner = $1
      AND (f.attempt IS NULL OR t.attempts = f.attempt)
    RETURNING t.queue, t.state
), counts AS (
    SELECT queue, count(*) AS n FROM failed GROUP BY queue
), bumped AS (
    UPDATE queues AS q SET failed = q.failed + counts.n
    FROM counts WHERE q.name = counts.queue
), woken AS (
    SELECT pg_notify('longshore_queue', f.queue)
    FROM (SELECT DISTINCT queue FROM failed WHERE state = 'waiting') AS f
)
SELECT COALESCE((SELECT sum(n) FROM counts), 0)::integer, (SELECT count(*) FROM woken);

-- name: release
WITH released AS (
    UPDATE tasks AS t
    SET state = 'waiting', run_at = now(), attempts = greatest(t.attempts - 1, 0),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE t.id = ANY ($2::bigint[]) AND t.state = 'running' AND t.lease_owner = $1
    RETURNING t.queue
), woken AS (
    SELECT pg_notify('longshore_queue', r.queue) FROM (SELECT DISTINCT queue FROM released) AS r
)
SELECT (SELECT count(*) FROM released)::integer, (SELECT count(*) FROM woken);

-- name: heartbeat
WITH renewed AS (
    UPDATE tasks AS t SET lease_expires_at = now() + $2::interval
    WHERE t.state = 'running' AND t.lease_owner = $1
    RETURNING 1
), registered AS (
    UPDATE workers AS w SET heartbeat_at = now() WHERE w.worker_id = $1
)
SELECT count(*)::integer FROM renewed;

-- name: reclaim_expired
-- A lost lease is not a verdict on the task, so the attempt stays counted but the queue's
-- failed counter is left alone; a task out of attempts is dead-lettered.
WITH expired AS (
    UPDATE tasks AS t
    SET state = CASE WHEN t.attempts >= t.max_attempts THEN 'dead' ELSE 'waiting' END,
        run_at = CASE WHEN t.attempts >= t.max_attempts THEN t.run_at ELSE now() END,
        dead_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,
        last_error = format('lease of worker %s expired at %s', t.lease_owner,
                            t.lease_expires_at),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE t.state = 'running' AND t.lease_expires_at < now()
    RETURNING t.queue, t.state
), woken AS (
    SELECT pg_notify('longshore_queue', e.queue)
    FROM (SELECT DISTINCT queue FROM expired WHERE state = 'waiting') AS e
)
SELECT (SELECT count(*) FROM expired)::integer, (SELECT count(*) FROM woken);

-- name: sweep_stale_workers
WITH gone AS (
    DELETE FROM workers AS w WHERE w.heartbeat_at < now() - $1::interval
    RETURNING w.worker_id
), orphaned AS (
    UPDATE tasks AS t
    SET state = CASE WHEN t.attempts >= t.max_attempts THEN 'dead' ELSE 'waiting' END,
        run_at = CASE WHEN t.attempts >= t.max_attempts THEN t.run_at ELSE now() END,
        dead_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,
        last_error = format('lease of worker %s lost: worker stopped heartbeating',
                            t.lease_owner),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE t.state = 'running' AND t.lease_owner IN (SELECT worker_id FROM gone)
    RETURNING t.queue, t.state
), woken AS (
    SELECT pg_notify('longshore_queue', o.queue)
    FROM (SELECT DISTINCT queue FROM orphaned WHERE state = 'waiting') AS o
)
SELECT COALESCE((SELECT array_agg(worker_id ORDER BY worker_id) FROM gone), '{}'::text[]),
       (SELECT count(*) FROM woken);

-- name: get_task
SELECT * FROM tasks WHERE id = $1;

-- name: list_tasks
-- $2 is the stored state; $3 splits waiting into ready (true) and scheduled (false).
SELECT * FROM tasks AS t
WHERE ($1::text IS NULL OR t.queue = $1)
  AND ($2::text IS NULL OR t.state = $2)
  AND ($3::boolean IS NULL OR (t.run_at <= now()) = $3)
  AND ($4::text IS NULL OR t.handler = $4)
  AND ($5::text IS NULL OR t.handler ILIKE $5 OR t.key ILIKE $5 OR t.last_error ILIKE $5
       OR t.payload::text ILIKE $5)
ORDER BY t.id
LIMIT $6 OFFSET $7;

-- name: list_tasks_dead
-- list_tasks of dead tasks ($1 queue, $2 handler, $3 search): the state is written here so
-- that tasks_dead_id_idx (migration 012) is read instead of every task before the dead ones.
SELECT * FROM tasks AS t
WHERE t.state = 'dead'
  AND ($1::text IS NULL OR t.queue = $1)
  AND ($2::text IS NULL OR t.handler = $2)
  AND ($3::text IS NULL OR t.handler ILIKE $3 OR t.key ILIKE $3 OR t.last_error ILIKE $3
       OR t.payload::text ILIKE $3)
ORDER BY t.id
LIMIT $4 OFFSET $5;

-- name: count_tasks
SELECT count(*) FROM tasks AS t
WHERE ($1::text IS NULL OR t.queue = $1)
  AND ($2::text IS NULL OR t.state = $2)
  AND ($3::boolean IS NULL OR (t.run_at <= now()) = $3)
  AND ($4::text IS NULL OR t.handler = $4)
  AND ($5::text IS NULL OR t.handler ILIKE $5 OR t.key ILIKE $5 OR t.last_error ILIKE $5
       OR t.payload::text ILIKE $5);

-- name: count_tasks_capped
-- count_tasks, counting at most $6 tasks.
SELECT count(*) FROM (
  SELECT 1 FROM tasks AS t
  WHERE ($1::text IS NULL OR t.queue = $1)
    AND ($2::text IS NULL OR t.state = $2)
    AND ($3::boolean IS NULL OR (t.run_at <= now()) = $3)
    AND ($4::text IS NULL OR t.handler = $4)
    AND ($5::text IS NULL OR t.handler ILIKE $5 OR t.key ILIKE $5 OR t.last_error ILIKE $5
         OR t.payload::text ILIKE $5)
  LIMIT $6
) AS capped;

-- name: cancel
DELETE FROM tasks WHERE id = $1 AND state = 'waiting' RETURNING *;

-- name: task_state
SELECT state FROM tasks WHERE id = $1;

-- name: list_dead
SELECT * FROM tasks AS t
WHERE t.state = 'dead'
  AND ($1::text IS NULL OR t.queue = $1)
  AND ($2::text IS NULL OR t.handler = $2)
  AND ($3::text IS NULL OR t.handler ILIKE $3 OR t.key ILIKE $3 OR t.last_error ILIKE $3
       OR t.payload::text ILIKE $3)
  AND ($4::timestamptz IS NULL OR t.dead_at < $4)
  AND ($5::timestamptz IS NULL OR t.dead_at >= $5)
ORDER BY t.dead_at DESC, t.id DESC
LIMIT $6 OFFSET $7;

-- name: count_dead
SELECT count(*) FROM tasks AS t
WHERE t.state = 'dead'
  AND ($1::text IS NULL OR t.queue = $1)
  AND ($2::text IS NULL OR t.handler = $2)
  AND ($3::text IS NULL OR t.handler ILIKE $3 OR t.key ILIKE $3 OR t.last_error ILIKE $3
       OR t.payload::text ILIKE $3)
  AND ($4::timestamptz IS NULL OR t.dead_at < $4)
  AND ($5::timestamptz IS NULL OR t.dead_at >= $5);

-- name: replay_dead
WITH replayed AS (
    UPDATE tasks AS t
    SET state = 'waiting', attempts = 0, run_at = now(), dead_at = NULL,
        replayed_by = $2, replayed_at = now(), replay_count = t.replay_count + 1,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE t.id = ANY ($1::bigint[]) AND t.state = 'dead'
    RETURNING t.id, t.queue
), woken AS (
    SELECT pg_notify('longshore_queue', r.queue) FROM (SELECT DISTINCT queue FROM replayed) AS r
)
SELECT COALESCE((SELECT array_agg(id) FROM replayed), '{}'::bigint[]),
       (SELECT count(*) FROM woken);

-- name: replay_dead_matching
-- Oldest dead first; SKIP LOCKED so that two operators replaying at once split the work.
WITH picked AS (
    SELECT t.id, t.dead_at FROM tasks AS t
    WHERE t.state = 'dead'
      AND ($1::text IS NULL OR t.queue = $1)
      AND ($2::text IS NULL OR t.handler = $2)
      AND ($3::text IS NULL OR t.handler ILIKE $3 OR t.key ILIKE $3 OR t.last_error ILIKE $3
           OR t.payload::text ILIKE $3)
      AND ($4::timestamptz IS NULL OR t.dead_at < $4)
      AND ($5::timestamptz IS NULL OR t.dead_at >= $5)
    ORDER BY t.dead_at, t.id
    LIMIT $6
    FOR UPDATE SKIP LOCKED
), replayed AS (
    UPDATE tasks AS t
    SET state = 'waiting', attempts = 0, run_at = now(), dead_at = NULL,
        replayed_by = $7, replayed_at = now(), replay_count = t.replay_count + 1,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM picked
    WHERE t.id = picked.id AND t.state = 'dead'
    RETURNING t.id, t.queue, picked.dead_at
), woken AS (
    SELECT pg_notify('longshore_queue', r.queue) FROM (SELECT DISTINCT queue FROM replayed) AS r
)
SELECT COALESCE((SELECT array_agg(id ORDER BY dead_at, id) FROM replayed), '{}'::bigint[]),
       (SELECT count(*) FROM woken);

-- name: delete_dead
WITH deleted AS (
    DELETE FROM tasks WHERE id = ANY ($1::bigint[]) AND state = 'dead' RETURNING 1
)
SELECT count(*)::integer FROM deleted;

-- name: delete_dead_by_key
WITH deleted AS (
    DELETE FROM tasks WHERE state = 'dead' AND (key = $1 OR released_key = $1) RETURNING 1
)
SELECT count(*)::integer FROM deleted;

-- name: purge_dead
WITH deleted AS (
    DELETE FROM tasks WHERE state = 'dead' AND dead_at < $1 RETURNING 1
)
SELECT count(*)::integer FROM deleted;

-- name: dead_by_queue
SELECT queue AS name, count(*) AS n FROM tasks WHERE state = 'dead' GROUP BY queue;

-- name: dead_by_handler
SELECT handler AS name, count(*) AS n FROM tasks WHERE state = 'dead' GROUP BY handler;

-- name: dead_bounds
SELECT count(*) AS total, min(dead_at) AS oldest, max(dead_at) AS newest
FROM tasks WHERE state = 'dead';

-- name: list_queues
-- $1 = NULL lists every queue. Each count reads only its queue's entries of a partial index
-- (index-only for ready, scheduled and dead), so the cost follows the queue's own tasks, not
-- a scan of the whole table.
SELECT q.name, q.paused, COALESCE(q.weight, q.default_weight) AS weight,
       q.weight IS NOT NULL AS weight_overridden, q.concurrency_limit,
       q.completed, q.failed,
       (SELECT count(*) FROM tasks AS t
         WHERE t.queue = q.name AND t.state = 'waiting' AND t.run_at <= now()) AS ready,
       (SELECT count(*) FROM tasks AS t
         WHERE t.queue = q.name AND t.state = 'waiting' AND t.run_at > now()) AS scheduled,
       (SELECT count(*) FROM tasks AS t
         WHERE t.queue = q.name AND t.state = 'running') AS running,
       (SELECT count(*) FROM tasks AS t
         WHERE t.queue = q.name AND t.state = 'dead') AS dead
FROM queues AS q
WHERE $1::text IS NULL OR q.name = $1
ORDER BY q.name;

-- name: set_queue_paused
INSERT INTO queues (name, paused) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused;

-- name: set_queue_weight
INSERT INTO queues (name, weight) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET weight = excluded.weight;

-- name: reset_queue_weight
INSERT INTO queues (name) VALUES ($1)
ON CONFLICT (name) DO UPDATE SET weight = NULL;

-- name: set_queue_concurrency
INSERT INTO queues (name, concurrency_limit) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET concurrency_limit = excluded.concurrency_limit;

-- name: set_default_weights
INSERT INTO queues (name, default_weight)
SELECT * FROM unnest($1::text[], $2::integer[])
ON CONFLICT (name) DO UPDATE SET default_weight = excluded.default_weight;

-- name: notify
SELECT pg_notify('longshore_queue', $1);

-- name: set_global_paused
INSERT INTO settings (key, value) VALUES ('dequeue_paused', to_jsonb($1::boolean))
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: is_global_paused
SELECT COALESCE((SELECT value = 'true'::jsonb FROM settings WHERE key = 'dequeue_paused'),
                false);

-- name: register_worker
INSERT INTO workers (worker_id, hostname, pid, concurrency, queues, version)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (worker_id) DO UPDATE
SET hostname = excluded.hostname, pid = excluded.pid, concurrency = excluded.concurrency,
    queues = excluded.queues, version = excluded.version, heartbeat_at = now();

-- name: deregister_worker
-- Its leases are given back as release() does: the interrupted attempt does not count.
WITH gone AS (
    DELETE FROM workers WHERE worker_id = $1
), released AS (
    UPDATE tasks AS t
    SET state = 'waiting', run_at = now(), attempts = greatest(t.attempts - 1, 0),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE t.state = 'running' AND t.lease_owner = $1
    RETURNING t.queue
), woken AS (
    SELECT pg_notify('longshore_queue', r.queue) FROM (SELECT DISTINCT queue FROM released) AS r
)
SELECT (SELECT count(*) FROM released)::integer, (SELECT count(*) FROM woken);

-- name: list_workers
SELECT w.*, (SELECT count(*) FROM tasks AS t
             WHERE t.state = 'running' AND t.lease_owner = w.worker_id) AS running
FROM workers AS w
ORDER BY w.worker_id;

-- name: purge_done
WITH deleted AS (
    DELETE FROM tasks WHERE state = 'done' AND done_at < $1 RETURNING 1
)
SELECT count(*)::integer FROM deleted;

-- ---------------------------------------------------------------------------- operator actions
-- Each runs in a transaction after op_lock_task / op_lock_key locked the row and
-- store.queue.operator checked its state.

-- name: op_lock_task
SELECT * FROM tasks WHERE id = $1 FOR UPDATE;

-- name: op_lock_key
SELECT * FROM tasks WHERE key = $1 FOR UPDATE;

-- name: op_delete
DELETE FROM tasks WHERE id = $1;

-- name: op_mark_done
UPDATE tasks
SET state = 'done', done_at = now(), dead_at = NULL, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: op_fail
UPDATE tasks
SET state = 'dead', dead_at = now(), last_error = $2, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: op_run_now
WITH moved AS (
    UPDATE tasks SET run_at = least(run_at, now()), updated_at = now() WHERE id = $1
    RETURNING *
), woken AS (
    SELECT pg_notify('longshore_queue', queue) FROM moved
)
SELECT * FROM moved WHERE (SELECT count(*) FROM woken) >= 0;

-- name: op_reschedule
WITH moved AS (
    UPDATE tasks
    SET run_at = COALESCE($2::timestamptz, run_at),
        priority = COALESCE($3::integer, priority),
        attempts = COALESCE($4::integer, attempts),
        max_attempts = COALESCE($5::integer, max_attempts),
        retry = CASE WHEN $5::integer IS NULL THEN retry
                     ELSE jsonb_set(retry, '{maxAttempts}', to_jsonb($5::integer)) END,
        updated_at = now()
    WHERE id = $1
    RETURNING *
), woken AS (
    SELECT pg_notify('longshore_queue', queue) FROM moved
)
SELECT * FROM moved WHERE (SELECT count(*) FROM woken) >= 0;

-- name: force_unlock
-- As release: the interrupted attempt is not counted, the task keeps its place.
WITH owned AS (
    SELECT t.id, t.lease_owner FROM tasks AS t
    WHERE t.state = 'running' AND t.lease_owner = ANY ($1::text[])
    FOR UPDATE
), released AS (
    UPDATE tasks AS t
    SET state = 'waiting', run_at = least(t.run_at, now()),
        attempts = greatest(t.attempts - 1, 0),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM owned
    WHERE t.id = owned.id
    RETURNING t.id, owned.lease_owner AS owner, t.queue
), woken AS (
    SELECT pg_notify('longshore_queue', r.queue) FROM (SELECT DISTINCT queue FROM released) AS r
)
SELECT id, owner FROM released WHERE (SELECT count(*) FROM woken) >= 0 ORDER BY id;

-- name: dead_preview
-- The queues of the tasks replay_dead_matching would pick ($6 NULL = no limit).
SELECT queue, count(*) AS n FROM (
    SELECT t.queue FROM tasks AS t
    WHERE t.state = 'dead'
      AND ($1::text IS NULL OR t.queue = $1)
      AND ($2::text IS NULL OR t.handler = $2)
      AND ($3::text IS NULL OR t.handler ILIKE $3 OR t.key ILIKE $3 OR t.last_error ILIKE $3
           OR t.payload::text ILIKE $3)
      AND ($4::timestamptz IS NULL OR t.dead_at < $4)
      AND ($5::timestamptz IS NULL OR t.dead_at >= $5)
    ORDER BY t.dead_at, t.id
    LIMIT $6
) AS picked
GROUP BY queue
ORDER BY queue;

-- name: gc_lock
-- Every enqueue writes to queues (its missing rows) before it inserts a task and holds that
-- lock to commit: waiting for them here, and holding new ones off, means no task can be
-- added to a queue between the check below and its row's deletion.
LOCK TABLE queues IN SHARE ROW EXCLUSIVE MODE;

-- name: gc_queues
DELETE FROM queues AS q
WHERE NOT q.paused AND q.weight IS NULL AND q.default_weight = 1
  AND q.concurrency_limit IS NULL
  AND NOT EXISTS (SELECT 1 FROM tasks AS t WHERE t.queue = q.name)
RETURNING q.name;
