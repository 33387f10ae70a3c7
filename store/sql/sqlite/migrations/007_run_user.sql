-- The user a job's container runs as: chosen by the definition (NULL: the default
-- unprivileged user) and recorded on each run that reached its container.
ALTER TABLE job_definitions ADD COLUMN run_user TEXT;
ALTER TABLE runs ADD COLUMN run_user TEXT;
