"""Schedules on the embedded SQLite database.

Implements :class:`store.schedules.protocol.ScheduleStore`; the semantics live in the
protocol's docstrings. Each operation is one short transaction run in one hop on the
database's writer (or reader) thread (see :mod:`store.db.sqlite`); the SQL is in
``store/sql/sqlite/schedules.sql``. Changes wake this object's waiters directly; other
processes see them by polling the version. Leadership is an ``flock`` on
``<database file>.scheduler.lock``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from store.db.sqlite import SqliteDatabase
from store.queue._sqlite_rows import now_us
from store.queue.models import TaskState
from store.schedules import _checks as checks
from store.schedules import _rows as rows
from store.schedules.errors import ScheduleNotFound
from store.schedules.models import FiringRecord, LastTask, Page, Schedule, SchedulesState
from store.sqlfiles import queries

__all__ = ["SqliteLeaderLock", "SqliteScheduleStore"]


def q(name: str) -> str:
    return queries("sqlite", "schedules")[name]


T = TypeVar("T")


class SqliteScheduleStore:
    """:class:`~store.schedules.protocol.ScheduleStore` on SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._changed = asyncio.Event()

    async def upsert(self, schedule: Schedule) -> tuple[Schedule, bool]:
        params = rows.sqlite_params(checks.check_schedule(schedule), now_us())

        def run(conn: sqlite3.Connection) -> sqlite3.Row:
            row: sqlite3.Row = conn.execute(q("upsert_schedule"), params).fetchone()
            conn.execute(q("bump_version"))
            return row

        saved = rows.schedule_from_sqlite(await self._change(run))
        return saved, saved.revision == 1

    async def get(self, name: str) -> Schedule | None:
        params = {"name": name}
        row = await self._db.read(lambda conn: conn.execute(q("get_schedule"), params).fetchone())
        return None if row is None else rows.schedule_from_sqlite(row)

    async def list_schedules(self, *, limit: int, offset: int) -> Page[Schedule]:
        checks.check_page(limit, offset)

        def run(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            found = conn.execute(q("list_schedules"), {"limit": limit, "offset": offset})
            return found.fetchall(), int(conn.execute(q("count_schedules")).fetchone()[0])

        found, total = await self._db.read(run)
        items = [rows.schedule_from_sqlite(row) for row in found]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def list_all(self) -> list[Schedule]:
        found = await self._db.read(lambda conn: conn.execute(q("list_all_schedules")).fetchall())
        return [rows.schedule_from_sqlite(row) for row in found]

    async def delete(self, name: str) -> bool:
        params = {"name": name}

        def run(conn: sqlite3.Connection) -> bool:
            if not conn.execute(q("delete_schedule"), params).rowcount:
                return False
            conn.execute(q("bump_version"))
            return True

        return await self._change(run)

    async def set_paused(self, name: str, paused: bool) -> Schedule:
        params = {"name": name, "paused": int(bool(paused)), "now": now_us()}

        def run(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(q("set_paused"), params).fetchone()
            if row is not None:
                conn.execute(q("bump_version"))
            return row

        row = await self._change(run)
        if row is None:
            raise ScheduleNotFound(name)
        return rows.schedule_from_sqlite(row)

    async def set_all_paused(self, paused: bool) -> SchedulesState:
        params = {"paused": int(bool(paused)), "now": now_us()}

        def run(conn: sqlite3.Connection) -> sqlite3.Row:
            conn.execute(q("set_all_paused"), params)
            conn.execute(q("bump_version"))
            row: sqlite3.Row = conn.execute(q("get_state")).fetchone()
            return row

        return rows.state_from_sqlite(await self._change(run))

    async def state(self) -> SchedulesState:
        row = await self._db.read(lambda conn: conn.execute(q("get_state")).fetchone())
        return rows.state_from_sqlite(row)

    async def record_firing(
        self, name: str, *, fire_time: datetime | None, task_id: int | None
    ) -> bool:
        checks.check_moment(fire_time)
        params = {"name": name, "fire_time": rows.maybe_to_us(fire_time), "task_id": task_id}
        count = await self._db.write(lambda conn: conn.execute(q("record_firing"), params).rowcount)
        return bool(count)

    async def record_firings(self, records: Sequence[FiringRecord]) -> set[str]:
        merged = checks.merge_firings(records)
        if not merged:
            return set()
        batch: list[dict[str, object]] = [
            {"name": r.name, "fire_time": rows.maybe_to_us(r.fire_time), "task_id": r.task_id}
            for r in merged
        ]

        def run(conn: sqlite3.Connection) -> set[str]:
            statement = q("record_firing")
            return {str(p["name"]) for p in batch if conn.execute(statement, p).rowcount}

        return await self._db.write(run)

    async def last_tasks(self, names: Sequence[str]) -> dict[str, LastTask]:
        if not names:
            return {}
        params = {"names": json.dumps(list(names)), "now": now_us()}
        found = await self._db.read(lambda conn: conn.execute(q("last_tasks"), params).fetchall())
        return {
            str(row["name"]): LastTask(
                schedule=str(row["name"]),
                task_id=int(row["task_id"]),
                state=TaskState(row["state"]),
            )
            for row in found
        }

    # The signature is the protocol's: a timeout parameter is the documented contract.
    async def wait_for_change(self, timeout: float) -> None:  # noqa: ASYNC109
        if not self._changed.is_set():
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=max(timeout, 0.0))
            except TimeoutError:
                return
        self._changed.clear()

    def leader_lock(self, holder: str = "") -> SqliteLeaderLock:
        return SqliteLeaderLock(self._lock_path, holder)

    async def leader(self) -> str | None:
        return await asyncio.to_thread(_lock_holder, self._lock_path)

    @property
    def _lock_path(self) -> Path:
        return Path(f"{self._db.path}.scheduler.lock")

    async def close(self) -> None:
        """Nothing to release: the database belongs to the caller."""

    async def _change(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        result = await self._db.write(fn)
        self._changed.set()
        return result


class SqliteLeaderLock:
    """:class:`~store.schedules.protocol.LeaderLock`: an exclusive ``flock`` on a file.

    ``flock`` locks belong to the open file, so the kernel drops the lock when the process
    dies (``kill -9`` included), and two lock objects in one process exclude each other.
    The holder writes its name into the file once it holds the lock.
    """

    def __init__(self, path: Path, holder: str = "") -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = self._fd = _try_flock(self.path)
        if fd is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, self.holder.encode(), 0)
        return fd is not None

    async def still_held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the descriptor drops the lock.
            os.close(fd)


def _try_flock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_holder(path: Path) -> str | None:
    """The name written by the holder of the lock at ``path``, ``None`` when unheld. A
    shared lock taken for an instant tells (it fails while the exclusive one is held); a
    candidate trying to lead in that instant fails once and tries again later."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 1024, 0).decode(errors="replace").strip()
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
