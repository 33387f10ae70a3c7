-- Container jobs: job definitions and their runs.

-- One row per job definition; command and env are JSON arrays of strings. revision counts
-- saves (1 when created).
CREATE TABLE job_definitions (
    name text PRIMARY KEY,
    revision integer NOT NULL,
    description text NOT NULL DEFAULT '',
    source text NOT NULL CHECK (source IN ('git_tag', 'tarball_url', 'tarball_path')),
    repo text,
    tag text,
    tarball_url text,
    tarball_path text,
    tarball_sha256 text,
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
