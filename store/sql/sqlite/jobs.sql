-- Named queries of store.jobs.sqlite. Timestamps are epoch microseconds; :now is passed in
-- by the caller so that one operation uses one clock reading. source_fields, command, env
-- and artifacts are JSON text.

-- ---------------------------------------------------------------------------- definitions

-- name: upsert_job
-- Every field is replaced; created_at is kept and the revision incremented on update, so a
-- returned revision of 1 means the row was created.
INSERT INTO job_definitions (
    name, revision, description, source, source_fields, path, dockerfile, command, env,
    queue, retries, timeout_seconds, memory_mb, cpus, pids_limit, network, artifacts_path,
    output_bytes, on_output_limit, run_user, secrets, params, created_at, updated_at
) VALUES (
    :name, 1, :description, :source, :source_fields, :path, :dockerfile, :command, :env,
    :queue, :retries, :timeout_seconds, :memory_mb, :cpus, :pids_limit, :network,
    :artifacts_path, :output_bytes, :on_output_limit, :run_user, :secrets, :params, :now, :now
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
    updated_at = excluded.updated_at
RETURNING *

-- name: get_job
SELECT * FROM job_definitions WHERE name = :name

-- name: list_jobs
SELECT * FROM job_definitions ORDER BY name LIMIT :limit OFFSET :offset

-- name: count_jobs
SELECT count(*) FROM job_definitions

-- name: delete_job
DELETE FROM job_definitions WHERE name = :name

-- ---------------------------------------------------------------------------- runs

-- name: insert_run
INSERT INTO runs (
    run_id, task_id, job, attempt, trigger_kind, actor, schedule_name, status, queued_at,
    updated_at, params
) VALUES (
    :run_id, :task_id, :job, :attempt, :trigger_kind, :actor, :schedule_name, 'queued', :now,
    :now, :params
)
ON CONFLICT (run_id) DO NOTHING
RETURNING *

-- name: get_run
SELECT * FROM runs WHERE run_id = :run_id

-- name: transition_run
-- Legal only from the statuses in :sources (a JSON array), checked in the same statement
-- that writes. A NULL field parameter keeps the stored value.
UPDATE runs SET
    status = :status,
    fetching_at = CASE WHEN :status = 'fetching' THEN :now ELSE fetching_at END,
    building_at = CASE WHEN :status = 'building' THEN :now ELSE building_at END,
    running_at = CASE WHEN :status = 'running' THEN :now ELSE running_at END,
    finished_at = CASE WHEN :final THEN :now ELSE finished_at END,
    exit_code = coalesce(:exit_code, exit_code),
    error = coalesce(:error, error),
    commit_sha = coalesce(:commit_sha, commit_sha),
    source_sha256 = coalesce(:source_sha256, source_sha256),
    image_id = coalesce(:image_id, image_id),
    output_bytes = coalesce(:output_bytes, output_bytes),
    output_truncated = coalesce(:output_truncated, output_truncated),
    build_log = coalesce(:build_log, build_log),
    artifacts = coalesce(:artifacts, artifacts),
    run_user = coalesce(:run_user, run_user),
    params = coalesce(:params, params),
    updated_at = :now
WHERE run_id = :run_id AND status IN (SELECT value FROM json_each(:sources))
RETURNING *

-- name: set_run_artifacts
UPDATE runs SET artifacts = :artifacts, updated_at = :now
WHERE run_id = :run_id AND status IN ('queued', 'fetching', 'building', 'running')
RETURNING *

-- name: request_cancel
UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, :now), updated_at = :now
WHERE run_id = :run_id AND status IN ('queued', 'fetching', 'building', 'running')
RETURNING *

-- Listings come in one query per filter shape: "(:job IS NULL OR job = :job)" would keep
-- the planner from using the indexes on job and status.

-- name: list_runs
SELECT * FROM runs ORDER BY seq DESC LIMIT :limit OFFSET :offset

-- name: count_runs
SELECT count(*) FROM runs

-- name: list_runs_of_job
SELECT * FROM runs WHERE job = :job ORDER BY seq DESC LIMIT :limit OFFSET :offset

-- name: count_runs_of_job
SELECT count(*) FROM runs WHERE job = :job

-- name: list_runs_in_status
SELECT * FROM runs WHERE status = :status ORDER BY seq DESC LIMIT :limit OFFSET :offset

-- name: count_runs_in_status
SELECT count(*) FROM runs WHERE status = :status

-- name: list_runs_of_job_in_status
SELECT * FROM runs WHERE job = :job AND status = :status
ORDER BY seq DESC LIMIT :limit OFFSET :offset

-- name: count_runs_of_job_in_status
SELECT count(*) FROM runs WHERE job = :job AND status = :status

-- name: latest_run
SELECT * FROM runs WHERE job = :job ORDER BY seq DESC LIMIT 1

-- name: active_runs
SELECT * FROM runs WHERE status IN ('queued', 'fetching', 'building', 'running') ORDER BY seq

-- name: active_runs_of_job
SELECT * FROM runs
WHERE job = :job AND status IN ('queued', 'fetching', 'building', 'running')
ORDER BY seq

-- name: runs_by_task
SELECT * FROM runs WHERE task_id = :task_id ORDER BY seq

-- ---------------------------------------------------------------------------- retention

-- name: jobs_with_runs
SELECT DISTINCT job FROM runs ORDER BY job

-- name: prunable_runs
-- Kept: unfinished runs, the :keep_last newest (the seq of the :keep_last-th newest is the
-- bound), those created at or after :cutoff, and the newest success and failure. Oldest
-- first, so that a pass cut short has removed the oldest.
SELECT run_id FROM runs
WHERE job = :job
  AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
  AND seq < coalesce(
      (SELECT seq FROM runs WHERE job = :job ORDER BY seq DESC LIMIT 1 OFFSET :keep_last - 1),
      0)
  AND queued_at < :cutoff
  AND seq NOT IN (
      SELECT seq FROM (
          SELECT seq FROM runs WHERE job = :job AND status = 'succeeded'
          ORDER BY seq DESC LIMIT 1)
      UNION ALL
      SELECT seq FROM (
          SELECT seq FROM runs WHERE job = :job AND status IN ('failed', 'timed_out')
          ORDER BY seq DESC LIMIT 1)
  )
ORDER BY seq
LIMIT :limit OFFSET :offset

-- name: delete_runs
-- Only final runs go. :run_ids is a JSON array.
DELETE FROM runs
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
  AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
RETURNING seq, run_id

-- name: delete_run_blobs
-- The run_blobs rows of the deleted runs (:seqs, a JSON array) tell which blobs they used.
DELETE FROM run_blobs WHERE run_seq IN (SELECT value FROM json_each(:seqs)) RETURNING sha256

-- name: referenced_blobs
SELECT DISTINCT sha256 FROM run_blobs WHERE sha256 IN (SELECT value FROM json_each(:digests))

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
