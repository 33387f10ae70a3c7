"""Migrations: migrating an empty database gives exactly the reference schema
(``store/sql/<backend>/schema.sql``), and migrating again changes nothing."""

from __future__ import annotations

import re
import sqlite3

from store import sqlfiles

MIGRATIONS_TABLE = "schema_migrations"


def normalise_sql(sql):
    if sql is None:
        return None
    text = re.sub(r"\s+", " ", sql).strip()
    text = re.sub(r"\s*([(),])\s*", r"\1", text)
    return text.rstrip(";")


def sqlite_schema(path):
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return sorted(
        (kind, name, table, normalise_sql(sql))
        for kind, name, table, sql in rows
        if MIGRATIONS_TABLE not in (name, table)
    )


def apply_sqlite_reference(path):
    conn = sqlite3.connect(path)
    try:
        conn.executescript(sqlfiles.schema("sqlite"))
        conn.commit()
    finally:
        conn.close()


POSTGRES_CATALOG = {
    "columns": f"""
        SELECT table_name, column_name, data_type, udt_name, column_default, is_nullable,
               character_maximum_length, numeric_precision, ordinal_position
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> '{MIGRATIONS_TABLE}'
    """,
    "indexes": f"""
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> '{MIGRATIONS_TABLE}'
    """,
    "constraints": f"""
        SELECT cls.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
        FROM pg_constraint con
        JOIN pg_class cls ON cls.oid = con.conrelid
        JOIN pg_namespace ns ON ns.oid = cls.relnamespace
        WHERE ns.nspname = 'public' AND cls.relname <> '{MIGRATIONS_TABLE}'
    """,
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc
        FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace
        WHERE ns.nspname = 'public'
    """,
    "triggers": f"""
        SELECT cls.relname, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t
        JOIN pg_class cls ON cls.oid = t.tgrelid
        JOIN pg_namespace ns ON ns.oid = cls.relnamespace
        WHERE ns.nspname = 'public' AND NOT t.tgisinternal
          AND cls.relname <> '{MIGRATIONS_TABLE}'
    """,
    "tables": f"""
        SELECT table_name, table_type FROM information_schema.tables
        WHERE table_schema = 'public' AND table_name <> '{MIGRATIONS_TABLE}'
    """,
    "sequences": f"""
        SELECT sequence_name, data_type FROM information_schema.sequences
        WHERE sequence_schema = 'public' AND sequence_name NOT LIKE '{MIGRATIONS_TABLE}%'
    """,
}


async def postgres_schema(url):
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        dump = {}
        for part, query in POSTGRES_CATALOG.items():
            rows = await conn.fetch(query)
            dump[part] = sorted(tuple("" if v is None else str(v) for v in r) for r in rows)
        return dump
    finally:
        await conn.close()


async def apply_postgres_reference(url):
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sqlfiles.schema("postgres"))
    finally:
        await conn.close()


async def test_migrating_an_empty_database_gives_the_reference_schema(
    backend, queue_factory, queue_location, empty_database
):
    reference = await empty_database()
    db = await queue_factory.open_database()
    try:
        applied = await db.migrate()
    finally:
        await db.close()
    assert applied == [m.version for m in sqlfiles.migrations(backend)]

    if backend == "sqlite":
        apply_sqlite_reference(reference)
        migrated, expected = sqlite_schema(queue_location), sqlite_schema(reference)
    else:
        await apply_postgres_reference(reference)
        migrated, expected = await postgres_schema(queue_location), await postgres_schema(reference)

    assert migrated, "migrating produced no schema at all"
    assert migrated == expected


async def test_migrating_twice_is_a_no_op(backend, queue_factory):
    versions = [m.version for m in sqlfiles.migrations(backend)]
    assert versions, "the backend has no migrations"

    db = await queue_factory.open_database()
    try:
        assert await db.migrate() == versions
        assert await db.schema_version() == versions[-1]
        assert await db.migrate() == []
        assert await db.schema_version() == versions[-1]
    finally:
        await db.close()

    again = await queue_factory.open_database()
    try:
        assert await again.migrate() == []
        assert await again.schema_version() == versions[-1]
    finally:
        await again.close()
