"""The embedded SQLite database shared by every SQLite-backed store.

One :class:`SqliteDatabase` per process holds two connections, each owned by its own
thread: one for writes, one for reads. WAL mode lets the reader see every committed write
while the writer works, and lets several processes share the file (a CLI enqueueing while
``longshore serve`` runs, a worker restarted after ``kill -9``).

A transaction is a plain function of a :class:`sqlite3.Connection` that runs on the
connection's thread from ``BEGIN`` to ``COMMIT`` in one hop (:meth:`SqliteDatabase.write`,
:meth:`SqliteDatabase.read`). This is the aiosqlite model (a thread per connection)
without its one thread round trip per statement: a claim is one hop, not four, which
is what keeps claim latency low on a busy machine. It also means a cancelled caller can
never leave a transaction half open: the function still runs to COMMIT or ROLLBACK.

Durability: ``synchronous=NORMAL`` in WAL mode keeps every acknowledged commit across a
crash or ``kill -9`` of any process; surviving power loss or an OS crash would need
``synchronous=FULL`` (an fsync per commit).

Errors: anything sqlite3 raises becomes :class:`store.errors.StoreUnavailable` (the file
cannot be opened, is locked for longer than the busy timeout, the disk is full, ...)
after the transaction is rolled back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from store.background import TaskOwner
from store.errors import MigrationError, StoreError, StoreUnavailable
from store.sqlfiles import Migration, migrations, queries

logger = logging.getLogger(__name__)

__all__ = ["SqliteDatabase"]

T = TypeVar("T")


def _sql(name: str) -> str:
    return queries("sqlite", "database")[name]


def _casefold(value: object) -> str | None:
    return None if value is None else str(value).casefold()


class _Connection:
    """A sqlite3 connection and the single thread allowed to use it."""

    def __init__(self, path: Path, role: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{role}")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self.call(self._connect)

    def _connect(self) -> None:
        # isolation_level=None: the sqlite3 module must not open transactions behind our
        # back; transaction() issues BEGIN and COMMIT itself.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            # Unicode-aware case folding for searches; SQLite's lower() is ASCII-only.
            conn.create_function("casefold", 1, _casefold, deterministic=True)
            for name in (
                "set_busy_timeout",
                "set_journal_mode",
                "set_synchronous",
                "set_foreign_keys",
                "disable_autocheckpoint",
            ):
                conn.execute(_sql(name))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"SQLite rejected a write: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite database {self._path}: {exc}") from exc

    async def transaction(self, begin: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._conn
            if conn is None:
                raise StoreUnavailable(f"SQLite database {self._path} is closed")
            conn.execute(_sql(begin))
            try:
                result = fn(conn)
                conn.execute(_sql("commit"))
            except BaseException:
                if conn.in_transaction:
                    conn.execute(_sql("rollback"))
                raise
            return result

        return await self.call(run)

    def execute(self, query: str) -> None:
        """Run one named statement outside any transaction (on this connection's thread)."""
        if self._conn is not None:
            self._conn.execute(_sql(query)).fetchall()

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self.call(close)
        finally:
            self._executor.shutdown(wait=False)


class SqliteDatabase:
    """An open SQLite database file: transactions and migrations.

    Writes are serialised by the writer thread within this process and by
    ``BEGIN IMMEDIATE`` plus the busy timeout across processes. Keep write functions
    short and free of I/O other than the database: every writer everywhere waits on them.
    """

    CHECKPOINT_INTERVAL = 1.0

    def __init__(
        self, path: Path, writer: _Connection, reader: _Connection, checkpointer: _Connection
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._checkpointer = checkpointer
        self._closed = False
        self._background = TaskOwner("sqlite")
        self._background.spawn(self._checkpoint_loop(), name="sqlite-checkpoint")

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SqliteDatabase:
        """Open (creating if needed) the database file and its parent directories."""
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create directory for {target}: {exc}") from exc
        # The writer first: it may have to create the file and switch it to WAL.
        writer = _Connection(target, "writer")
        reader = _Connection(target, "reader")
        checkpointer = _Connection(target, "checkpoint")
        try:
            await writer.open()
            await reader.open()
            await checkpointer.open()
        except BaseException:
            for conn in (writer, reader, checkpointer):
                await conn.close()
            raise
        logger.info("sqlite database opened", extra={"path": str(target)})
        return cls(target, writer, reader, checkpointer)

    async def _checkpoint_loop(self) -> None:
        """Keep the WAL short without ever checkpointing inside a commit (see the
        ``disable_autocheckpoint`` query); closing the last connection checkpoints fully."""
        while True:
            await asyncio.sleep(self.CHECKPOINT_INTERVAL)
            try:
                await self._checkpointer.call(
                    lambda: self._checkpointer.execute("checkpoint_passive")
                )
            except StoreError:
                logger.warning("sqlite checkpoint failed", exc_info=True)

    async def close(self) -> None:
        """Close both connections; later calls raise :class:`StoreUnavailable`."""
        if self._closed:
            return
        self._closed = True
        await self._background.close()
        for conn in (self._writer, self._reader, self._checkpointer):
            try:
                await conn.close()
            except StoreError:
                logger.warning("closing a sqlite connection failed", exc_info=True)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction (``BEGIN IMMEDIATE``) and return its result.

        An exception from ``fn`` rolls the transaction back and propagates; sqlite3
        errors are translated (see the module docstring).
        """
        self._check_open()
        return await self._writer.transaction("begin_write", fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a read transaction: all its statements see one snapshot."""
        self._check_open()
        return await self._reader.transaction("begin_read", fn)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"SQLite database {self.path} is closed")

    # --- migrations --------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply pending migrations in order, each in its own transaction.

        Safe when several processes migrate at once: each migration re-checks the ledger
        under the write lock. Returns the versions this call applied.
        """
        known = migrations("sqlite")
        await self.write(lambda conn: conn.execute(_sql("create_migrations_table")))
        applied_now: list[int] = []
        for migration in known:
            if await self.write(partial(_apply, migration=migration, newest_known=len(known))):
                applied_now.append(migration.version)
                logger.info(
                    "sqlite migration applied",
                    extra={"version": migration.version, "migration": migration.name},
                )
        return applied_now

    async def schema_version(self) -> int:
        """The newest applied migration, 0 for an empty database."""

        def version(conn: sqlite3.Connection) -> int:
            if not conn.execute(_sql("migrations_table_exists")).fetchone()[0]:
                return 0
            versions = conn.execute(_sql("applied_versions")).fetchall()
            return int(versions[-1][0]) if versions else 0

        return await self.read(version)


def _apply(conn: sqlite3.Connection, *, migration: Migration, newest_known: int) -> bool:
    """Apply one migration unless the ledger has it; say whether it was applied."""
    applied = {int(row[0]) for row in conn.execute(_sql("applied_versions"))}
    if applied and max(applied) > newest_known:
        raise MigrationError(
            f"database schema version {max(applied)} is newer than this code "
            f"({newest_known}); upgrade Longshore"
        )
    if migration.version in applied:
        return False
    for statement in _split_statements(migration.sql):
        try:
            conn.execute(statement)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise
            raise MigrationError(
                f"migration {migration.version:03d}_{migration.name} failed: {exc}"
            ) from exc
    conn.execute(
        _sql("record_migration"),
        {
            "version": migration.version,
            "name": migration.name,
            "applied_at": time.time_ns() // 1000,
        },
    )
    return True


def _split_statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would commit first)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if _has_code(pending):
                statements.append(pending.strip())
            pending = ""
    if _has_code(pending):
        raise MigrationError(f"migration ends in an incomplete statement: {pending.strip()!r}")
    return statements


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())
