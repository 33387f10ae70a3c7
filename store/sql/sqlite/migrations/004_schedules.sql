-- Durable cron schedules (scheduler/): the definition saved by users and the runtime state
-- kept by the leading scheduler; times in microseconds since the Unix epoch, payload JSON.
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
