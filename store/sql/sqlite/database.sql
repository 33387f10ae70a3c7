-- Statements of store.db.sqlite: connection setup and the migration ledger.

-- name: set_busy_timeout
-- Another process may hold the write lock (a CLI enqueue while the service runs); wait
-- for it this long (ms) before giving up with "database is locked".
PRAGMA busy_timeout = 10000

-- name: set_journal_mode
-- WAL lets readers run beside the single writer, across processes.
PRAGMA journal_mode = WAL

-- name: set_synchronous
-- In WAL mode NORMAL survives kill -9 of any process (the OS keeps the WAL) but not power
-- loss or an OS crash, which need FULL at the cost of an fsync per commit.
PRAGMA synchronous = NORMAL

-- name: set_foreign_keys
PRAGMA foreign_keys = ON

-- name: begin_write
-- IMMEDIATE takes the write lock up front, so two processes never deadlock upgrading a
-- read transaction to a write one.
BEGIN IMMEDIATE

-- name: begin_read
-- A read transaction pins one snapshot for all of its statements.
BEGIN DEFERRED

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
)

-- name: migrations_table_exists
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'

-- name: applied_versions
SELECT version FROM schema_migrations ORDER BY version

-- name: record_migration
INSERT INTO schema_migrations (version, name, applied_at) VALUES (:version, :name, :applied_at)

-- name: disable_autocheckpoint
-- Automatic checkpoints run inside whichever commit crosses the threshold, adding
-- milliseconds to that one enqueue or claim; SqliteDatabase checkpoints in the background
-- on a connection of its own instead.
PRAGMA wal_autocheckpoint = 0

-- name: checkpoint_passive
-- PASSIVE never waits for readers or writers: it copies what it can and returns.
PRAGMA wal_checkpoint(PASSIVE)
