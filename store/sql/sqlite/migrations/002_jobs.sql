-- Container jobs: job definitions and their runs. Timestamps as in 001 (epoch microseconds).

-- One row per job definition; command and env are JSON arrays of strings. revision counts
-- saves (1 when created).
CREATE TABLE job_definitions (
    name            TEXT    PRIMARY KEY,
    revision        INTEGER NOT NULL,
    description     TEXT    NOT NULL DEFAULT '',
    source          TEXT    NOT NULL
                    CHECK (source IN ('git_tag', 'tarball_url', 'tarball_path')),
    repo            TEXT,
    tag             TEXT,
    tarball_url     TEXT,
    tarball_path    TEXT,
    tarball_sha256  TEXT,
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
