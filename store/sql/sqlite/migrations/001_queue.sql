-- The durable task queue.
--
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC): exact round trips of
-- Python datetimes, cheap comparisons, and the same precision as PostgreSQL timestamptz.

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT    NOT NULL,
    handler          TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL,
    state            TEXT    NOT NULL
                     CHECK (state IN ('waiting', 'running', 'dead', 'done')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    retry            TEXT    NOT NULL,
    last_error       TEXT,
    key              TEXT,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    dead_at          INTEGER,
    done_at          INTEGER,
    replayed_by      TEXT,
    replayed_at      INTEGER,
    replay_count     INTEGER NOT NULL DEFAULT 0
);

-- Idempotency keys; NULLs do not collide.
CREATE UNIQUE INDEX tasks_key ON tasks (key);

-- Claims walk this index in claim order, so it covers only waiting rows.
CREATE INDEX tasks_claim ON tasks (queue, priority, run_at, id) WHERE state = 'waiting';
-- "Does this queue have a ready task?" in one seek (queue = ? AND run_at <= now), even when
-- the queue (or one of its priorities) holds many tasks scheduled far in the future: in
-- tasks_claim, priority comes before run_at, so that probe could seek on queue only and
-- would step over every scheduled task of the queue.
CREATE INDEX tasks_ready ON tasks (queue, run_at) WHERE state = 'waiting';

-- Running rows are few; these serve concurrency limits, heartbeats and lease expiry.
CREATE INDEX tasks_running_queue ON tasks (queue) WHERE state = 'running';
CREATE INDEX tasks_running_owner ON tasks (lease_owner) WHERE state = 'running';
CREATE INDEX tasks_running_expiry ON tasks (lease_expires_at) WHERE state = 'running';

CREATE INDEX tasks_dead ON tasks (dead_at) WHERE state = 'dead';
CREATE INDEX tasks_done ON tasks (done_at) WHERE state = 'done';

-- One row per queue that ever had a task or a setting. weight is the operator's override
-- (NULL = use default_weight, the configured one); completed and failed are cumulative.
CREATE TABLE queues (
    name              TEXT    PRIMARY KEY,
    paused            INTEGER NOT NULL DEFAULT 0,
    weight            INTEGER,
    default_weight    INTEGER NOT NULL DEFAULT 1,
    concurrency_limit INTEGER,
    completed         INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Queue-wide switches such as the global dequeue pause; values are JSON.
CREATE TABLE queue_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Live worker registrations; queues is a JSON array, or NULL for every queue.
CREATE TABLE workers (
    worker_id    TEXT    PRIMARY KEY,
    hostname     TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    queues       TEXT,
    version      TEXT    NOT NULL DEFAULT '',
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) WITHOUT ROWID;
