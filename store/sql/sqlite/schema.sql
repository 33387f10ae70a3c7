-- The schema of a fully migrated SQLite database: the migration ledger kept by
-- store.db.sqlite, then every migration in order. A test checks that migrating an empty
-- database yields exactly this.

-- Applied migrations; applied_at in microseconds since the Unix epoch.
CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
);

-- The durable task queue (migration 001); timestamps as above.
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
    replay_count     INTEGER NOT NULL DEFAULT 0,
    released_key     TEXT
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
-- 006: the key a dead task held until a newer task took it over (released_key).
CREATE INDEX tasks_released_key ON tasks (released_key) WHERE released_key IS NOT NULL;

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

-- Container jobs (migration 002); timestamps as above.

-- The source types the database knows (migration 005): one row each, inserted by the
-- migration that brings the type in (git_tag, tarball_url and tarball_path by 005).
CREATE TABLE job_sources (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

-- One row per job definition; source_fields (the source type's fields, by name; since
-- migration 005) is a JSON object of strings, command and env are JSON arrays of strings.
-- revision counts saves (1 when created).
CREATE TABLE job_definitions (
    name            TEXT    PRIMARY KEY,
    revision        INTEGER NOT NULL,
    description     TEXT    NOT NULL DEFAULT '',
    source          TEXT    NOT NULL REFERENCES job_sources (name),
    source_fields   TEXT    NOT NULL DEFAULT '{}',
    path            TEXT,
    dockerfile      TEXT    NOT NULL,
    command         TEXT    NOT NULL DEFAULT '[]',
    env             TEXT    NOT NULL DEFAULT '[]',
    queue           TEXT    NOT NULL,
    retries         INTEGER NOT NULL,
    timeout_seconds INTEGER NOT NULL,
    memory_mb       INTEGER NOT NULL,
    cpus            REAL    NOT NULL,
    pids_limit      INTEGER NOT NULL,
    network         TEXT    NOT NULL,
    artifacts_path  TEXT    NOT NULL,
    output_bytes    INTEGER,
    on_output_limit TEXT    NOT NULL CHECK (on_output_limit IN ('truncate', 'fail')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per attempt at running a job. seq orders runs by creation (run ids are random);
-- job is not a foreign key, so a run's history outlives its definition. artifacts is a
-- JSON array of {name, size_bytes, sha256}: always read and written with its run.
CREATE TABLE runs (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id              TEXT    NOT NULL UNIQUE,
    task_id             INTEGER,
    job                 TEXT    NOT NULL,
    attempt             INTEGER NOT NULL,
    trigger_kind        TEXT    NOT NULL CHECK (trigger_kind IN ('api', 'schedule', 'replay')),
    actor               TEXT,
    schedule_name       TEXT,
    status              TEXT    NOT NULL
                        CHECK (status IN ('queued', 'fetching', 'building', 'running',
                                          'succeeded', 'failed', 'timed_out', 'cancelled')),
    queued_at           INTEGER NOT NULL,
    fetching_at         INTEGER,
    building_at         INTEGER,
    running_at          INTEGER,
    finished_at         INTEGER,
    cancel_requested_at INTEGER,
    exit_code           INTEGER,
    error               TEXT,
    commit_sha          TEXT,
    source_sha256       TEXT,
    image_id            TEXT,
    output_bytes        INTEGER NOT NULL DEFAULT 0,
    output_truncated    INTEGER NOT NULL DEFAULT 0,
    artifacts           TEXT    NOT NULL DEFAULT '[]',
    build_log           TEXT    NOT NULL DEFAULT '',
    updated_at          INTEGER NOT NULL
);

-- Listings newest first, by job, by status, or both (job first: the usual filter).
CREATE INDEX runs_job ON runs (job, seq);
CREATE INDEX runs_status ON runs (status, seq);
CREATE INDEX runs_task ON runs (task_id) WHERE task_id IS NOT NULL;
-- Runs not yet final are few: crash recovery and "is this job running?" read only these.
CREATE INDEX runs_active ON runs (job, seq)
    WHERE status IN ('queued', 'fetching', 'building', 'running');

-- 003: runs keep the SHA256 of their rendered output, stored in the artifact store.
ALTER TABLE runs ADD COLUMN output_sha256 TEXT;

-- 004: durable cron schedules (see migrations/004_schedules.sql).
CREATE TABLE schedules (
    name                  TEXT    PRIMARY KEY,
    spec                  TEXT    NOT NULL,
    timezone              TEXT    NOT NULL,
    factory               TEXT    NOT NULL,
    payload               TEXT    NOT NULL DEFAULT '{}',
    paused                INTEGER NOT NULL DEFAULT 0,
    durable               INTEGER NOT NULL DEFAULT 1,
    overlap_policy        TEXT    NOT NULL CHECK (overlap_policy IN ('allow', 'forbid', 'replace')),
    misfire_grace_seconds INTEGER NOT NULL CHECK (misfire_grace_seconds >= 0),
    catch_up              TEXT    NOT NULL CHECK (catch_up IN ('none', 'latest')),
    revision              INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    resumed_at            INTEGER,
    last_fire_time        INTEGER,
    last_task_id          INTEGER
) WITHOUT ROWID;

-- One row: the change counter every scheduler instance watches, and the pause-all switch.
CREATE TABLE schedules_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    version        INTEGER NOT NULL,
    all_paused     INTEGER NOT NULL,
    all_resumed_at INTEGER
);

INSERT INTO schedules_state (id, version, all_paused) VALUES (1, 0, 0);

-- 007: the user a job's container runs as (see migrations/007_run_user.sql).
ALTER TABLE job_definitions ADD COLUMN run_user TEXT;
ALTER TABLE runs ADD COLUMN run_user TEXT;

-- 008: the blobs each run references (see migrations/008_run_blobs.sql).
CREATE TABLE run_blobs (
    run_seq INTEGER NOT NULL,
    sha256  TEXT    NOT NULL,
    PRIMARY KEY (run_seq, sha256)
) WITHOUT ROWID;

CREATE INDEX run_blobs_sha256_idx ON run_blobs (sha256);

-- Only when a referencing column changes: most transitions (a stage's time) touch none.
CREATE TRIGGER runs_index_blobs
AFTER UPDATE OF output_sha256, source_sha256, artifacts ON runs
FOR EACH ROW
WHEN OLD.output_sha256 IS NOT NEW.output_sha256
    OR OLD.source_sha256 IS NOT NEW.source_sha256
    OR OLD.artifacts IS NOT NEW.artifacts
BEGIN
    DELETE FROM run_blobs WHERE run_seq = NEW.seq;
    INSERT OR IGNORE INTO run_blobs (run_seq, sha256)
    SELECT NEW.seq, digest FROM (
        SELECT NEW.output_sha256 AS digest
        UNION ALL SELECT NEW.source_sha256
        UNION ALL SELECT json_extract(value, '$.sha256') FROM json_each(NEW.artifacts)
    )
    WHERE digest IS NOT NULL;
END;

-- 009: secrets (encrypted), the secrets and parameters of job definitions, the parameters of runs
-- (see migrations/009_secrets_params.sql).
CREATE TABLE secrets (
    name       TEXT    PRIMARY KEY,
    ciphertext BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE job_definitions ADD COLUMN secrets TEXT NOT NULL DEFAULT '[]';
ALTER TABLE job_definitions ADD COLUMN params TEXT NOT NULL DEFAULT '[]';
ALTER TABLE runs ADD COLUMN params TEXT;

-- 010: notification rules (store.notifications, migrations/010_notification_rules.sql): one row per rule, its fields as a JSON body
-- (the webhook secret only sealed with the secrets key, as `sealedSecret`; never shown).
CREATE TABLE notification_rules (
    name       TEXT    PRIMARY KEY,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
