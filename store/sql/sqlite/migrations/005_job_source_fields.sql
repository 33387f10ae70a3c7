-- Job sources: the source types the database knows, and a definition's source fields as one
-- JSON object instead of a column each (repo, tag, tarball_url, tarball_path,
-- tarball_sha256), so that a new source type adds no column. A new source type's migration
-- inserts its name into job_sources; nothing else in the database changes.

CREATE TABLE job_sources (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

INSERT INTO job_sources (name) VALUES ('git_tag'), ('tarball_url'), ('tarball_path');

-- SQLite cannot change a column's constraint in place (source's CHECK becomes a reference
-- to job_sources), so the rows move through a temporary table into a new job_definitions,
-- whose CREATE statement is then exactly the one in schema.sql. json_patch drops the unset
-- (NULL) fields.
CREATE TEMPORARY TABLE job_definitions_004 AS
SELECT
    name, revision, description, source,
    json_patch('{}', json_object(
        'repo', repo, 'tag', tag, 'tarball_url', tarball_url, 'tarball_path', tarball_path,
        'tarball_sha256', tarball_sha256
    )) AS source_fields,
    path, dockerfile, command, env, queue, retries, timeout_seconds, memory_mb, cpus,
    pids_limit, network, artifacts_path, output_bytes, on_output_limit, created_at, updated_at
FROM job_definitions;

DROP TABLE job_definitions;

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

INSERT INTO job_definitions (
    name, revision, description, source, source_fields, path, dockerfile, command, env,
    queue, retries, timeout_seconds, memory_mb, cpus, pids_limit, network, artifacts_path,
    output_bytes, on_output_limit, created_at, updated_at
)
SELECT
    name, revision, description, source, source_fields, path, dockerfile, command, env,
    queue, retries, timeout_seconds, memory_mb, cpus, pids_limit, network, artifacts_path,
    output_bytes, on_output_limit, created_at, updated_at
FROM job_definitions_004;

DROP TABLE job_definitions_004;
