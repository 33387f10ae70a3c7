-- Bookkeeping of PostgresDatabase: schema migrations.

-- name: migration_lock
-- Held until the migration's transaction ends, so concurrent migrators apply each version once.
SELECT pg_advisory_xact_lock(hashtext('longshore.schema_migrations'));

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_versions
SELECT version FROM schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO schema_migrations (version, name) VALUES ($1, $2);

-- name: schema_version
SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0
            ELSE (SELECT COALESCE(max(version), 0) FROM schema_migrations) END;
