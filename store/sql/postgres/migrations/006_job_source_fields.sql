-- Job sources: the source types the database knows, and a definition's source fields as one
-- JSON object instead of a column each (repo, tag, tarball_url, tarball_path,
-- tarball_sha256), so that a new source type adds no column. A new source type's migration
-- inserts its name into job_sources; nothing else in the database changes.

CREATE TABLE job_sources (
    name text PRIMARY KEY
);

INSERT INTO job_sources (name) VALUES ('git_tag'), ('tarball_url'), ('tarball_path');

-- The table is made again rather than altered, so its columns keep the order (and numbers)
-- of schema.sql; the rows wait in a temporary table meanwhile. jsonb_strip_nulls drops the
-- unset fields.
CREATE TEMPORARY TABLE job_definitions_005 AS
SELECT
    name, revision, description, source,
    jsonb_strip_nulls(jsonb_build_object(
        'repo', repo, 'tag', tag, 'tarball_url', tarball_url, 'tarball_path', tarball_path,
        'tarball_sha256', tarball_sha256
    )) AS source_fields,
    path, dockerfile, command, env, queue, retries, timeout_seconds, memory_mb, cpus,
    pids_limit, network, artifacts_path, output_bytes, on_output_limit, created_at, updated_at
FROM job_definitions;

DROP TABLE job_definitions;

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

INSERT INTO job_definitions (
    name, revision, description, source, source_fields, path, dockerfile, command, env,
    queue, retries, timeout_seconds, memory_mb, cpus, pids_limit, network, artifacts_path,
    output_bytes, on_output_limit, created_at, updated_at
)
SELECT
    name, revision, description, source, source_fields, path, dockerfile, command, env,
    queue, retries, timeout_seconds, memory_mb, cpus, pids_limit, network, artifacts_path,
    output_bytes, on_output_limit, created_at, updated_at
FROM job_definitions_005;

DROP TABLE job_definitions_005;
