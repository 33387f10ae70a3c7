-- Named queries of store.jobs.postgres. Times come from the database clock (now()).

-- ---------------------------------------------------------------------------- definitions

-- name: upsert_job
-- Every field is replaced; created_at is kept and the revision incremented on update, so a
-- returned revision of 1 means the row was created. The row lock of ON CONFLICT serialises
-- concurrent saves of one name.
INSERT INTO job_definitions (
    name, revision, description, source, source_fields, path, dockerfile, command, env,
    queue, retries, timeout_seconds, memory_mb, cpus, pids_limit, network, artifacts_path,
    output_bytes, on_output_limit, run_user, secrets, params
) VALUES (
    $1, 1, $2, $3, $4::jsonb, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12, $13, $14, $15,
    $16, $17, $18, $19, $20::jsonb, $21::jsonb
)
ON CONFLICT (name) DO UPDATE SET
    revision = job_definitions.revision + 1,
    description = excluded.description,
    source = excluded.source,
    source_fields = excluded.source_fields,
    path = excluded.path,
    dockerfile = excluded.dockerfile,
    command = excluded.command,
    env = excluded.env,
    queue = excluded.queue,
    retries = excluded.retries,
    timeout_seconds = excluded.timeout_seconds,
    memory_mb = excluded.memory_mb,
    cpus = excluded.cpus,
    pids_limit = excluded.pids_limit,
    network = excluded.network,
    artifacts_path = excluded.artifacts_path,
    output_bytes = excluded.output_bytes,
    on_output_limit = excluded.on_output_limit,
    run_user = excluded.run_user,
    secrets = excluded.secrets,
    params = excluded.params,
    updated_at = now()
RETURNING *;

-- name: get_job
SELECT * FROM job_definitions WHERE name = $1;

-- name: list_jobs
SELECT * FROM job_definitions ORDER BY name LIMIT $1 OFFSET $2;

-- name: count_jobs
SELECT count(*) FROM job_definitions;

-- name: delete_job
DELETE FROM job_definitions WHERE name = $1 RETURNING name;

-- ---------------------------------------------------------------------------- runs

-- name: insert_run
INSERT INTO runs (
    run_id, task_id, job, attempt, trigger_kind, actor, schedule_name, status, params
)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8::jsonb)
ON CONFLICT (run_id) DO NOTHING
RETURNING *;

-- name: get_run
SELECT * FROM runs WHERE run_id = $1;

-- name: transition_run
-- Legal only from the statuses in $3, checked in the same statement that writes: the row
-- lock makes a racing transition re-check the status it finds after waiting. A NULL field
-- parameter keeps the stored value.
UPDATE runs SET
    status = $2,
    fetching_at = CASE WHEN $2 = 'fetching' THEN now() ELSE fetching_at END,
    building_at = CASE WHEN $2 = 'building' THEN now() ELSE building_at END,
    running_at = CASE WHEN $2 = 'running' THEN now() ELSE running_at END,
    finished_at = CASE WHEN $4::boolean THEN now() ELSE finished_at END,
    exit_code = coalesce($5::integer, exit_code),
    error = coalesce($6::text, error),
    commit_sha = coalesce($7::text, commit_sha),
    source_sha256 = coalesce($8::text, source_sha256),
    image_id = coalesce($9::text, image_id),
    output_bytes = coalesce($10::bigint, output_bytes),
    output_truncated = coalesce($11::boolean, output_truncated),
    build_log = coalesce($12::text, build_log),
    artifacts = coalesce($13::jsonb, artifacts),
    run_user = coalesce($14::text, run_user),
    params = coalesce($15::jsonb, params),
    updated_at = now()
WHERE run_id = $1 AND status = ANY ($3::text[])
RETURNING *;

-- name: set_run_artifacts
UPDATE runs SET artifacts = $2::jsonb, updated_at = now()
WHERE run_id = $1 AND status IN ('queued', 'fetching', 'building', 'running')
RETURNING *;

-- name: request_cancel
UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
WHERE run_id = $1 AND status IN ('queued', 'fetching', 'building', 'running')
RETURNING *;

-- Listings come in one query per filter shape: "($1 IS NULL OR job = $1)" would keep a
-- generic plan of the prepared statement from using the indexes on job and status.
-- Parameters: [job,] [status,] limit, offset.

-- name: list_runs
SELECT * FROM runs ORDER BY seq DESC LIMIT $1 OFFSET $2;

-- name: count_runs
SELECT count(*) FROM runs;

-- name: list_runs_of_job
SELECT * FROM runs WHERE job = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3;

-- name: count_runs_of_job
SELECT count(*) FROM runs WHERE job = $1;

-- name: list_runs_in_status
SELECT * FROM runs WHERE status = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3;

-- name: count_runs_in_status
SELECT count(*) FROM runs WHERE status = $1;

-- name: list_runs_of_job_in_status
SELECT * FROM runs WHERE job = $1 AND status = $2 ORDER BY seq DESC LIMIT $3 OFFSET $4;

-- name: count_runs_of_job_in_status
SELECT count(*) FROM runs WHERE job = $1 AND status = $2;

-- name: latest_run
SELECT * FROM runs WHERE job = $1 ORDER BY seq DESC LIMIT 1;

-- name: active_runs
SELECT * FROM runs WHERE status IN ('queued', 'fetching', 'building', 'running') ORDER BY seq;

-- name: active_runs_of_job
SELECT * FROM runs
WHERE job = $1 AND status IN ('queued', 'fetching', 'building', 'running')
ORDER BY seq;

-- name: runs_by_task
SELECT * FROM runs WHERE task_id = $1 ORDER BY seq;

-- name: run_status
SELECT status FROM runs WHERE run_id = $1;

-- ---------------------------------------------------------------------------- retention

-- name: jobs_with_runs
-- A loose index scan of runs_job_idx: one probe per job instead of reading every run.
WITH RECURSIVE jobs AS (
    (SELECT job FROM runs ORDER BY job LIMIT 1)
    UNION ALL
    SELECT (SELECT r.job FROM runs r WHERE r.job > jobs.job ORDER BY r.job LIMIT 1)
    FROM jobs WHERE jobs.job IS NOT NULL
)
SELECT job FROM jobs WHERE job IS NOT NULL;

-- name: prunable_runs
-- Parameters: job, keep_last, keep_for (interval), limit, offset. Kept: unfinished runs,
-- the keep_last newest (the seq of the keep_last-th newest is the bound), those younger
-- than keep_for, and the newest success and failure. Oldest first, so that a pass cut
-- short has removed the oldest.
SELECT run_id FROM runs
WHERE job = $1
  AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
  AND seq < coalesce(
      (SELECT seq FROM runs WHERE job = $1 ORDER BY seq DESC OFFSET $2 - 1 LIMIT 1), 0)
  AND queued_at < now() - $3::interval
  AND seq NOT IN (
      SELECT seq FROM (
          (SELECT seq FROM runs WHERE job = $1 AND status = 'succeeded'
           ORDER BY seq DESC LIMIT 1)
          UNION ALL
          (SELECT seq FROM runs WHERE job = $1 AND status IN ('failed', 'timed_out')
           ORDER BY seq DESC LIMIT 1)
      ) pinned
  )
ORDER BY seq
LIMIT $4 OFFSET $5;

-- name: delete_runs
-- Only final runs go; the run_blobs rows of the deleted runs go with them and tell which
-- blobs they referenced.
WITH gone AS (
    DELETE FROM runs
    WHERE run_id = ANY ($1::text[])
      AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
    RETURNING seq, run_id
), unlinked AS (
    DELETE FROM run_blobs WHERE run_seq IN (SELECT seq FROM gone) RETURNING sha256
)
SELECT ARRAY(SELECT run_id FROM gone) AS run_ids,
       ARRAY(SELECT DISTINCT sha256 FROM unlinked) AS digests;

-- name: referenced_blobs
SELECT DISTINCT sha256 FROM run_blobs WHERE sha256 = ANY ($1::text[]);

-- name: schedule_health
-- Per schedule that started runs: when its newest successful run finished, and how many of
-- its runs failed (or timed out) after that one (all of them, when none succeeded).
WITH ok AS (
    SELECT schedule_name, max(seq) AS seq FROM runs
    WHERE schedule_name IS NOT NULL AND status = 'succeeded'
    GROUP BY schedule_name
)
SELECT r.schedule_name AS schedule_name,
       (SELECT s.finished_at FROM runs s WHERE s.seq = ok.seq) AS last_success_at,
       SUM(CASE WHEN r.status IN ('failed', 'timed_out') AND r.seq > COALESCE(ok.seq, 0)
                THEN 1 ELSE 0 END) AS failures_since
FROM runs r LEFT JOIN ok ON ok.schedule_name = r.schedule_name
WHERE r.schedule_name IS NOT NULL
GROUP BY r.schedule_name, ok.seq
ORDER BY r.schedule_name
