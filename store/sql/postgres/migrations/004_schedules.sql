-- Durable cron schedules (scheduler/): the definition saved by users and the runtime state
-- kept by the leading scheduler.
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
