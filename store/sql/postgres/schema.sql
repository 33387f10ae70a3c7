-- The schema of a fully migrated database (migrations/001 onwards). A test compares a
-- catalog dump of a migrated database with one built from this file: keep them equal.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    -- Operator override; NULL means default_weight applies.
    weight integer CHECK (weight BETWEEN 1 AND 1000),
    default_weight integer NOT NULL DEFAULT 1 CHECK (default_weight BETWEEN 1 AND 1000),
    concurrency_limit integer CHECK (concurrency_limit >= 1),
    completed bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0
);

CREATE TABLE settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);

CREATE TABLE workers (
    worker_id text PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    concurrency integer NOT NULL,
    queues jsonb,
    version text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Autovacuum defaults on purpose: a tighter scale factor (0.02) measured worse p99 claim
-- latency with a large backlog (each run rescans every index) and no gain on a small table.
CREATE TABLE tasks (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    handler text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    priority integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'waiting'
        CHECK (state IN ('waiting', 'running', 'dead', 'done')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    retry jsonb NOT NULL,
    last_error text,
    key text UNIQUE,
    lease_owner text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    dead_at timestamptz,
    done_at timestamptz,
    replayed_by text,
    replayed_at timestamptz,
    replay_count integer NOT NULL DEFAULT 0,
    -- 007: the key a dead task held until a newer task took it over.
    released_key text
);

-- The claim order within a queue; only waiting rows are indexed, so the index stays small.
CREATE INDEX tasks_claim_idx ON tasks (queue, priority, run_at, id) WHERE state = 'waiting';
-- "Does this queue have a ready task?" in one index probe, even when the queue (or one of
-- its priorities) holds many tasks scheduled far in the future.
CREATE INDEX tasks_ready_idx ON tasks (queue, run_at) WHERE state = 'waiting';
CREATE INDEX tasks_running_owner_idx ON tasks (lease_owner) WHERE state = 'running';
CREATE INDEX tasks_running_expiry_idx ON tasks (lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_dead_idx ON tasks (dead_at) WHERE state = 'dead';
-- 005: dead tasks per queue (the queue counts).
CREATE INDEX tasks_dead_queue_idx ON tasks (queue) WHERE state = 'dead';
-- 012: dead tasks by id (a task listing filtered to dead tasks).
CREATE INDEX tasks_dead_id_idx ON tasks (id) WHERE state = 'dead';
CREATE INDEX tasks_done_idx ON tasks (done_at) WHERE state = 'done';
CREATE INDEX tasks_released_key_idx ON tasks (released_key) WHERE released_key IS NOT NULL;

-- Enqueue a batch in one round trip. Arrays are parallel, one element per task, in input
-- order; returns (ord, outcome, task) per input element, ord being its 1-based position.
CREATE FUNCTION longshore_enqueue(
    p_queue text[],
    p_handler text[],
    p_payload jsonb[],
    p_priority integer[],
    p_run_at timestamptz[],
    p_key text[],
    p_mode text[],
    p_retry jsonb[],
    p_max_attempts integer[],
    p_key_retention interval
) RETURNS TABLE (ord integer, outcome text, task tasks)
LANGUAGE plpgsql
-- PL/pgSQL caches a generic plan per statement after five calls. Planned for no array in
-- particular, the keyless INSERT's join of inserted rows back to their input positions
-- became a nested loop over two CTE scans: fine for the one-task enqueues that made it,
-- quadratic for the next batch of 5,000 (1.9 s instead of 60-80 ms). No statement here
-- needs a nested loop (the keyed path looks rows up without joins), so none may use one:
-- that join is always hashed, whatever plan is cached, without re-planning every call.
SET enable_nestloop = off
AS $$
DECLARE
    b record;
    r tasks;
BEGIN
    -- Insert only the missing queue rows: an unconditional upsert would lock the hot
    -- queues row (also bumped by every completion) on every enqueue.
    INSERT INTO queues (name)
    SELECT DISTINCT n FROM unnest(p_queue) AS n
    WHERE NOT EXISTS (SELECT 1 FROM queues AS q WHERE q.name = n)
    ON CONFLICT (name) DO NOTHING;

    -- Keyless tasks cannot conflict with anything: one INSERT for all of them. Ids are
    -- drawn up front so that each inserted row can be matched to its input position.
    RETURN QUERY
    WITH batch AS MATERIALIZED (
        SELECT nextval('tasks_id_seq') AS id, u.*
        FROM unnest(p_queue, p_handler, p_payload, p_priority, p_run_at, p_key,
                    p_retry, p_max_attempts)
             WITH ORDINALITY AS u(queue, handler, payload, priority, run_at, key,
                                  retry, max_attempts, ord)
        WHERE u.key IS NULL
        ORDER BY u.ord
    ), inserted AS (
        INSERT INTO tasks AS t (id, queue, handler, payload, priority, run_at, retry,
                                max_attempts)
        SELECT batch.id, batch.queue, batch.handler, batch.payload, batch.priority,
               COALESCE(batch.run_at, now()), batch.retry, batch.max_attempts
        FROM batch
        RETURNING t.*
    )
    SELECT batch.ord::integer, 'created'::text, inserted::tasks
    FROM inserted JOIN batch USING (id);

    -- Keyed tasks one by one, in input order, so that two of them with one key behave as
    -- two enqueues in sequence.
    FOR b IN
        SELECT u.*
        FROM unnest(p_queue, p_handler, p_payload, p_priority, p_run_at, p_key, p_mode,
                    p_retry, p_max_attempts)
             WITH ORDINALITY AS u(queue, handler, payload, priority, run_at, key, mode,
                                  retry, max_attempts, ord)
        WHERE u.key IS NOT NULL
        ORDER BY u.ord
    LOOP
        ord := b.ord;
        <<attempt>>
        LOOP
            -- The row lock makes concurrent enqueues with this key queue up behind us.
            SELECT * INTO r FROM tasks AS t WHERE t.key = b.key FOR UPDATE;
            IF FOUND THEN
                IF r.state = 'done' AND r.done_at < now() - p_key_retention THEN
                    -- Retention is over: the finished task no longer holds its key.
                    DELETE FROM tasks AS t WHERE t.id = r.id;
                ELSIF b.mode = 'dedupe' THEN
                    outcome := 'deduplicated';
                    task := r;
                    RETURN NEXT;
                    EXIT attempt;
                ELSIF r.state = 'waiting' THEN
                    UPDATE tasks AS t
                    SET queue = b.queue, handler = b.handler, payload = b.payload,
                        priority = b.priority,
                        run_at = CASE WHEN b.mode = 'preserve_run_at' THEN t.run_at
                                      ELSE COALESCE(b.run_at, now()) END,
                        retry = b.retry, max_attempts = b.max_attempts,
                        attempts = 0, last_error = NULL, updated_at = now()
                    WHERE t.id = r.id
                    RETURNING t.* INTO r;
                    outcome := 'replaced';
                    task := r;
                    RETURN NEXT;
                    EXIT attempt;
                ELSE
                    -- Running, dead or done: that task keeps going without its key.
                    UPDATE tasks AS t SET key = NULL, updated_at = now() WHERE t.id = r.id;
                END IF;
            END IF;
            INSERT INTO tasks AS t (queue, handler, payload, priority, run_at, key, retry,
                                    max_attempts)
            VALUES (b.queue, b.handler, b.payload, b.priority, COALESCE(b.run_at, now()),
                    b.key, b.retry, b.max_attempts)
            ON CONFLICT (key) DO NOTHING
            RETURNING t.* INTO r;
            IF FOUND THEN
                outcome := 'created';
                task := r;
                RETURN NEXT;
                EXIT attempt;
            END IF;
            -- A concurrent enqueue committed this key after our SELECT: look again.
        END LOOP;
    END LOOP;

    -- One notification per queue per transaction (PostgreSQL folds duplicates anyway).
    PERFORM pg_notify('longshore_queue', n) FROM (SELECT DISTINCT unnest(p_queue)) AS s(n);
END;
$$;

-- Claim up to p_limit ready tasks for p_worker in one round trip (see the TaskQueue
-- docstring, "Claim order").
CREATE FUNCTION longshore_claim(
    p_worker text,
    p_limit integer,
    p_lease interval,
    p_queues text[]
) RETURNS SETOF tasks
LANGUAGE plpgsql
-- The plans must not depend on the statistics of the moment, nor on those of the moment
-- PL/pgSQL cached a generic plan (after five calls; e.g. while the table was empty):
-- no plan may sort what an index can hand over in order, nor scan the whole table. Each
-- query below is written so that exactly one index delivers its rows in the order it
-- asks for: the ready probe reads tasks_ready_idx (queue, run_at), the pick walks
-- tasks_claim_idx (queue, priority, run_at, id) and stops after `room` rows, the UPDATE
-- finds them by primary key. The only sorts left are over rows already chosen (the
-- queues, the claimed tasks), and the only sequential scan is of the queues table, for
-- which there is no alternative. Those plans are then right for any table size, so the
-- cached generic plans are kept (re-planning every call costs ~0.25 ms per claim).
-- enable_* = off adds a huge constant to the estimated cost of what remains, which would
-- make a server with the default jit settings JIT-compile every claim (~200 ms): jit = off.
SET enable_sort = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    q record;
    remaining integer := p_limit;
    room integer;
    taken integer;
BEGIN
    -- A claim need not wait for its WAL flush: if the server crashes before the record is
    -- on disk the tasks are simply waiting again (at-least-once holds), and any later
    -- synchronous commit (a completion, an enqueue) flushes it anyway. This halves the
    -- latency of the hottest statement of the queue.
    SET LOCAL synchronous_commit = off;
    IF p_limit <= 0
       OR EXISTS (SELECT 1 FROM settings AS s
                  WHERE s.key = 'dequeue_paused' AND s.value = 'true'::jsonb) THEN
        RETURN;
    END IF;
    -- Weighted random order without replacement: -ln(U)/w is exponentially distributed
    -- with rate w, so the queue with the smallest key wins with probability w/sum(w).
    -- 1 - random() is in (0, 1], so ln() never sees zero.
    -- The ready probe is a scalar subquery, evaluated once per queue row as one index
    -- probe; an EXISTS could be planned as a semi-join that reads every ready task.
    FOR q IN
        SELECT qu.name, qu.concurrency_limit
        FROM queues AS qu
        WHERE NOT qu.paused
          AND (p_queues IS NULL OR qu.name = ANY (p_queues))
          AND (SELECT true FROM tasks AS t
               WHERE t.queue = qu.name AND t.state = 'waiting' AND t.run_at <= now()
               ORDER BY t.run_at
               LIMIT 1)
        ORDER BY -ln(1.0 - random()) / COALESCE(qu.weight, qu.default_weight)
    LOOP
        room := remaining;
        IF q.concurrency_limit IS NOT NULL THEN
            -- Serialise the claimers of a capped queue until commit: without it, two
            -- workers could both count the same running tasks and together exceed the cap.
            -- The count below runs after the lock is granted, so it sees the winner's claim.
            PERFORM pg_advisory_xact_lock(hashtext('longshore.queue:' || q.name));
            SELECT LEAST(remaining, q.concurrency_limit - count(*))::integer INTO room
            FROM tasks AS t WHERE t.queue = q.name AND t.state = 'running';
            CONTINUE WHEN room <= 0;
        END IF;
        -- SKIP LOCKED: concurrent claimers take the next free rows instead of queueing up
        -- behind each other's row locks. The pick runs once, as an InitPlan, and the
        -- UPDATE finds its rows by primary key: no join for the planner to get wrong.
        RETURN QUERY
        WITH claimed AS (
            UPDATE tasks AS t
            SET state = 'running', attempts = t.attempts + 1, lease_owner = p_worker,
                lease_expires_at = now() + p_lease, updated_at = now()
            WHERE t.id = ANY (ARRAY(
                SELECT w.id FROM tasks AS w
                WHERE w.queue = q.name AND w.state = 'waiting' AND w.run_at <= now()
                ORDER BY w.priority, w.run_at, w.id
                LIMIT room
                FOR UPDATE SKIP LOCKED
            ))
            RETURNING t.*
        )
        SELECT * FROM claimed ORDER BY claimed.priority, claimed.run_at, claimed.id;
        GET DIAGNOSTICS taken = ROW_COUNT;
        remaining := remaining - taken;
        EXIT WHEN remaining <= 0;
    END LOOP;
END;
$$;

-- Container jobs (migration 002).

-- The source types the database knows (migration 006): one row each, inserted by the
-- migration that brings the type in (git_tag, tarball_url and tarball_path by 006).
CREATE TABLE job_sources (
    name text PRIMARY KEY
);

-- One row per job definition; source_fields (the source type's fields, by name; since
-- migration 006) is a JSON object of strings, command and env are JSON arrays of strings.
-- revision counts saves (1 when created).
CREATE TABLE job_definitions (
    name text PRIMARY KEY,
    revision integer NOT NULL,
    description text NOT NULL DEFAULT '',
    source text NOT NULL REFERENCES job_sources (name),
    source_fields jsonb NOT NULL DEFAULT '{}',
    path text,
    dockerfile text NOT NULL,
    command jsonb NOT NULL DEFAULT '[]',
    env jsonb NOT NULL DEFAULT '[]',
    queue text NOT NULL,
    retries integer NOT NULL,
    timeout_seconds integer NOT NULL,
    memory_mb integer NOT NULL,
    cpus double precision NOT NULL,
    pids_limit integer NOT NULL,
    network text NOT NULL,
    artifacts_path text NOT NULL,
    output_bytes bigint,
    on_output_limit text NOT NULL CHECK (on_output_limit IN ('truncate', 'fail')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per attempt at running a job. seq orders runs by creation (run ids are random);
-- job is not a foreign key, so a run's history outlives its definition. artifacts is a
-- JSON array of {name, size_bytes, sha256}: always read and written with its run.
CREATE TABLE runs (
    seq bigserial PRIMARY KEY,
    run_id text NOT NULL UNIQUE,
    task_id bigint,
    job text NOT NULL,
    attempt integer NOT NULL,
    trigger_kind text NOT NULL CHECK (trigger_kind IN ('api', 'schedule', 'replay')),
    actor text,
    schedule_name text,
    status text NOT NULL
        CHECK (status IN ('queued', 'fetching', 'building', 'running',
                          'succeeded', 'failed', 'timed_out', 'cancelled')),
    queued_at timestamptz NOT NULL DEFAULT now(),
    fetching_at timestamptz,
    building_at timestamptz,
    running_at timestamptz,
    finished_at timestamptz,
    cancel_requested_at timestamptz,
    exit_code integer,
    error text,
    commit_sha text,
    source_sha256 text,
    image_id text,
    output_bytes bigint NOT NULL DEFAULT 0,
    output_truncated boolean NOT NULL DEFAULT false,
    artifacts jsonb NOT NULL DEFAULT '[]',
    build_log text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Listings newest first, by job, by status, or both (job first: the usual filter).
CREATE INDEX runs_job_idx ON runs (job, seq);
CREATE INDEX runs_status_idx ON runs (status, seq);
CREATE INDEX runs_task_idx ON runs (task_id) WHERE task_id IS NOT NULL;
-- Runs not yet final are few: crash recovery and "is this job running?" read only these.
CREATE INDEX runs_active_idx ON runs (job, seq)
    WHERE status IN ('queued', 'fetching', 'building', 'running');

-- 003: runs keep the SHA256 of their rendered output, stored in the artifact store.
ALTER TABLE runs ADD COLUMN output_sha256 text;

-- 004: durable cron schedules (see migrations/004_schedules.sql).
CREATE TABLE schedules (
    name text PRIMARY KEY,
    spec text NOT NULL,
    timezone text NOT NULL,
    factory text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    paused boolean NOT NULL DEFAULT false,
    durable boolean NOT NULL DEFAULT true,
    overlap_policy text NOT NULL CHECK (overlap_policy IN ('allow', 'forbid', 'replace')),
    misfire_grace_seconds integer NOT NULL CHECK (misfire_grace_seconds >= 0),
    catch_up text NOT NULL CHECK (catch_up IN ('none', 'latest')),
    revision integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    resumed_at timestamptz,
    last_fire_time timestamptz,
    last_task_id bigint
);

-- One row: the change counter every scheduler instance watches, and the pause-all switch.
CREATE TABLE schedules_state (
    id integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL,
    all_paused boolean NOT NULL,
    all_resumed_at timestamptz
);

INSERT INTO schedules_state (id, version, all_paused) VALUES (1, 0, false);

-- 007: a dead task whose key a newer task takes over keeps it in released_key.
CREATE FUNCTION longshore_keep_released_key() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.released_key := OLD.key;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tasks_keep_released_key
    BEFORE UPDATE OF key ON tasks
    FOR EACH ROW
    WHEN (OLD.state = 'dead' AND OLD.key IS NOT NULL AND NEW.key IS NULL)
    EXECUTE FUNCTION longshore_keep_released_key();

-- 008: the user a job's container runs as (see migrations/008_run_user.sql).
ALTER TABLE job_definitions ADD COLUMN run_user text;
ALTER TABLE runs ADD COLUMN run_user text;

-- 009: the blobs each run references (see migrations/009_run_blobs.sql).
CREATE TABLE run_blobs (
    run_seq bigint NOT NULL,
    sha256 text NOT NULL,
    PRIMARY KEY (run_seq, sha256)
);

CREATE INDEX run_blobs_sha256_idx ON run_blobs (sha256);

CREATE FUNCTION runs_index_blobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM run_blobs WHERE run_seq = NEW.seq;
    INSERT INTO run_blobs (run_seq, sha256)
    SELECT DISTINCT NEW.seq, digest FROM (
        SELECT NEW.output_sha256 AS digest
        UNION ALL SELECT NEW.source_sha256
        UNION ALL SELECT element ->> 'sha256' FROM jsonb_array_elements(NEW.artifacts) element
    ) referenced
    WHERE digest IS NOT NULL;
    RETURN NULL;
END
$$;

-- Only when a referencing column changes: most transitions (a stage's time) touch none.
CREATE TRIGGER runs_index_blobs
AFTER UPDATE OF output_sha256, source_sha256, artifacts ON runs
FOR EACH ROW
WHEN (OLD.output_sha256 IS DISTINCT FROM NEW.output_sha256
      OR OLD.source_sha256 IS DISTINCT FROM NEW.source_sha256
      OR OLD.artifacts IS DISTINCT FROM NEW.artifacts)
EXECUTE FUNCTION runs_index_blobs();

-- 010: secrets (encrypted), the secrets and parameters of job definitions, the parameters of runs
-- (see migrations/010_secrets_params.sql).
CREATE TABLE secrets (
    name text PRIMARY KEY,
    ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE job_definitions ADD COLUMN secrets jsonb NOT NULL DEFAULT '[]';
ALTER TABLE job_definitions ADD COLUMN params jsonb NOT NULL DEFAULT '[]';
ALTER TABLE runs ADD COLUMN params jsonb;

-- 011: notification rules (store.notifications, migrations/011_notification_rules.sql): one row per rule, its fields as a JSON body
-- (the webhook secret only sealed with the secrets key, as `sealedSecret`; never shown).
CREATE TABLE notification_rules (
    name text PRIMARY KEY,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
