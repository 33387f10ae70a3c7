"""Schedules stored in PostgreSQL.

Implements :class:`store.schedules.protocol.ScheduleStore`; the semantics live in the
protocol's docstrings. A change is its statement plus ``bump_version`` in one transaction,
whose ``NOTIFY longshore_schedules`` reaches every listening process at commit; waiters
LISTEN on a dedicated connection and fall back to polling while it is down. Leadership is a
session advisory lock held on a connection taken from the pool for as long as it is held.
The SQL is in ``store/sql/postgres/schedules.sql``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

from store.db.postgres import NotificationWaiter, PostgresDatabase
from store.errors import StoreError
from store.queue.models import TaskState
from store.schedules import _checks as checks
from store.schedules import _rows as rows
from store.schedules.errors import ScheduleNotFound
from store.schedules.models import FiringRecord, LastTask, Page, Schedule, SchedulesState
from store.sqlfiles import queries

__all__ = ["LEADER_LOCK_KEY", "PostgresLeaderLock", "PostgresScheduleStore"]

logger = logging.getLogger(__name__)

CHANNEL = "longshore_schedules"
LEADER_LOCK_KEY = 0x4C6F6E6753636864
"""The advisory lock key of scheduler leadership ("LongSchd"); the queue's keys differ."""
# A leader whose connection does not answer this fast is no longer sure it leads.
_PING_TIMEOUT = 5.0
LEADER_NAME_PREFIX = "longshore scheduler "
"""The leader's connection is named ``<prefix><holder>`` (its ``application_name``, which
PostgreSQL cuts to 63 bytes), which is how :meth:`PostgresScheduleStore.leader` finds it."""


class PostgresScheduleStore:
    """:class:`~store.schedules.protocol.ScheduleStore` in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._sql = queries("postgres", "schedules")
        self._notifications = NotificationWaiter(db, CHANNEL, what="schedule")

    async def upsert(self, schedule: Schedule) -> tuple[Schedule, bool]:
        args = rows.postgres_args(checks.check_schedule(schedule))
        async with self._change() as connection:
            row = await connection.fetchrow(self._sql["upsert_schedule"], *args)
            await connection.execute(self._sql["bump_version"])
        saved = rows.schedule_from_postgres(row)
        return saved, saved.revision == 1

    async def get(self, name: str) -> Schedule | None:
        row = await self._db.fetchrow(self._sql["get_schedule"], name)
        return None if row is None else rows.schedule_from_postgres(row)

    async def list_schedules(self, *, limit: int, offset: int) -> Page[Schedule]:
        checks.check_page(limit, offset)
        async with (
            self._db.connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            found = await connection.fetch(self._sql["list_schedules"], limit, offset)
            total = await connection.fetchval(self._sql["count_schedules"])
        items = [rows.schedule_from_postgres(row) for row in found]
        return Page(items=items, total=int(total), limit=limit, offset=offset)

    async def list_all(self) -> list[Schedule]:
        found = await self._db.fetch(self._sql["list_all_schedules"])
        return [rows.schedule_from_postgres(row) for row in found]

    async def delete(self, name: str) -> bool:
        async with self._change() as connection:
            deleted = await connection.fetchrow(self._sql["delete_schedule"], name)
            if deleted is not None:
                await connection.execute(self._sql["bump_version"])
        return deleted is not None

    async def set_paused(self, name: str, paused: bool) -> Schedule:
        async with self._change() as connection:
            row = await connection.fetchrow(self._sql["set_paused"], name, bool(paused))
            if row is not None:
                await connection.execute(self._sql["bump_version"])
        if row is None:
            raise ScheduleNotFound(name)
        return rows.schedule_from_postgres(row)

    async def set_all_paused(self, paused: bool) -> SchedulesState:
        async with self._change() as connection:
            await connection.execute(self._sql["set_all_paused"], bool(paused))
            await connection.execute(self._sql["bump_version"])
            row = await connection.fetchrow(self._sql["get_state"])
        return rows.state_from_postgres(row)

    async def state(self) -> SchedulesState:
        row = await self._db.fetchrow(self._sql["get_state"])
        assert row is not None
        return rows.state_from_postgres(row)

    async def record_firing(
        self, name: str, *, fire_time: datetime | None, task_id: int | None
    ) -> bool:
        checks.check_moment(fire_time)
        row = await self._db.fetchrow(self._sql["record_firing"], name, fire_time, task_id)
        return row is not None

    async def record_firings(self, records: Sequence[FiringRecord]) -> set[str]:
        merged = checks.merge_firings(records)
        if not merged:
            return set()
        found = await self._db.fetch(
            self._sql["record_firings"],
            [r.name for r in merged],
            [r.fire_time for r in merged],
            [r.task_id for r in merged],
        )
        return {str(row["name"]) for row in found}

    async def last_tasks(self, names: Sequence[str]) -> dict[str, LastTask]:
        if not names:
            return {}
        found = await self._db.fetch(self._sql["last_tasks"], list(names))
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
        """See :meth:`ScheduleStore.wait_for_change`: woken by NOTIFY from any process and
        directly by this object's own changes; polling only while LISTEN is down."""
        await self._notifications.wait(timeout)

    def leader_lock(self, holder: str = "") -> PostgresLeaderLock:
        return PostgresLeaderLock(self._db, self._sql, holder)

    async def leader(self) -> str | None:
        async with self._db.connection() as connection:
            name = await connection.fetchval(self._sql["leader_name"], LEADER_LOCK_KEY)
        if name is None:
            return None
        return str(name).removeprefix(LEADER_NAME_PREFIX)

    async def close(self) -> None:
        """Close the LISTEN connection (the database itself belongs to the caller)."""
        await self._notifications.close()

    @asynccontextmanager
    async def _change(self) -> AsyncIterator[Any]:
        """A pooled connection in a transaction; after the commit, wake this object's
        waiters directly (the NOTIFY reaches the other processes)."""
        async with self._db.connection() as connection, connection.transaction():
            yield connection
        self._notifications.poke()


class PostgresLeaderLock:
    """:class:`~store.schedules.protocol.LeaderLock`: ``pg_try_advisory_lock`` on a pooled
    connection kept out of the pool while the lock is held.

    The lock lives as long as the session, so a killed process or a dropped connection frees
    it at once; giving the connection back to the pool frees it too (a session connection,
    reset with ``pg_advisory_unlock_all()`` and ``RESET ALL`` on its way back, which also
    drops the name the holder gave the session).
    """

    def __init__(self, db: PostgresDatabase, sql: dict[str, str], holder: str = "") -> None:
        self._db = db
        self._sql = sql
        self.holder = holder
        self._stack: AsyncExitStack | None = None
        self._connection: Any = None

    async def try_acquire(self) -> bool:
        if self._connection is not None:
            return True
        stack = AsyncExitStack()
        try:
            connection = await stack.enter_async_context(self._db.session_connection())
            won = await asyncio.wait_for(
                connection.fetchval(self._sql["try_leader_lock"], LEADER_LOCK_KEY),
                timeout=_PING_TIMEOUT,
            )
            if won:
                name = (LEADER_NAME_PREFIX + self.holder).encode()[:63].decode(errors="ignore")
                await asyncio.wait_for(
                    connection.execute(self._sql["name_leader"], name), timeout=_PING_TIMEOUT
                )
        except BaseException:
            await _close_quietly(stack)
            raise
        if not won:
            await _close_quietly(stack)
            return False
        self._stack, self._connection = stack, connection
        return True

    async def still_held(self) -> bool:
        connection = self._connection
        if connection is None:
            return False
        try:
            await asyncio.wait_for(connection.fetchval(self._sql["ping"]), timeout=_PING_TIMEOUT)
        except (StoreError, TimeoutError, OSError) as exc:
            logger.warning("scheduler leadership connection lost", extra={"error": str(exc)})
            await self.release()
            return False
        except Exception as exc:  # asyncpg's own errors: the session is gone either way
            logger.warning("scheduler leadership connection lost", extra={"error": str(exc)})
            await self.release()
            return False
        return True

    async def release(self) -> None:
        stack, self._stack, self._connection = self._stack, None, None
        if stack is not None:
            await _close_quietly(stack)


async def _close_quietly(stack: AsyncExitStack) -> None:
    try:
        await stack.aclose()
    except Exception as exc:  # a dead connection cannot be returned cleanly; it is gone
        logger.debug("closing the leadership connection failed", extra={"error": str(exc)})
