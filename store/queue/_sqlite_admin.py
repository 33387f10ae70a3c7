"""Inspection and management half of the SQLite task queue: task listings, the
dead-letter queue and queue settings.

Kept apart from the claim/complete hot path in :mod:`store.queue.sqlite`, which builds
:class:`~store.queue.sqlite.SqliteTaskQueue` on this class.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime

from store.db.sqlite import SqliteDatabase
from store.errors import InvalidTask
from store.queue import _sqlite_rows as rows
from store.queue.models import (
    DeadFilter,
    DeadStats,
    Page,
    QueueInfo,
    Task,
    TaskFilter,
    check_queue_name,
)
from store.sqlfiles import queries

logger = logging.getLogger(__name__)

_GLOBAL_PAUSED = "global_paused"


def q(name: str) -> str:
    """The named query from ``store/sql/sqlite/queue.sql``."""
    return queries("sqlite", "queue")[name]


class SqliteQueueAdmin:
    """Listings, dead-letter management and queue settings on a :class:`SqliteDatabase`.

    Owns the in-process wake-up event, because replays and resumes make work ready too.
    """

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._work = asyncio.Event()

    def _wake(self) -> None:
        self._work.set()

    # --- tasks -------------------------------------------------------------------------------

    async def get_task(self, task_id: int) -> Task | None:
        now = rows.now_us()
        found = await self._db.read(
            lambda conn: conn.execute(q("get_task"), {"id": task_id}).fetchone()
        )
        return None if found is None else rows.task_from_row(found, now)

    async def list_tasks(
        self, filter: TaskFilter, *, limit: int, offset: int, count_max: int | None = None
    ) -> Page[Task]:
        now = rows.now_us()
        params = rows.task_filter_params(filter, now)
        if count_max is not None:
            params = {**params, "cap": max(0, count_max)}
        return await self._page(
            "count_tasks" if count_max is None else "count_tasks_capped",
            "list_tasks",
            params,
            limit=limit,
            offset=offset,
            now=now,
        )

    async def _page(
        self,
        count: str,
        select: str,
        params: dict[str, object],
        *,
        limit: int,
        offset: int,
        now: int,
    ) -> Page[Task]:
        rows.check_page(limit, offset)
        paged = {**params, "limit": limit, "offset": offset}

        def run(conn: sqlite3.Connection) -> tuple[int, list[sqlite3.Row]]:
            total = conn.execute(q(count), params).fetchone()[0]
            return int(total), conn.execute(q(select), paged).fetchall()

        total, found = await self._db.read(run)
        items = [rows.task_from_row(row, now) for row in found]
        return Page(items=items, total=total, limit=limit, offset=offset)

    # --- dead-letter queue ------------------------------------------------------------------

    async def list_dead(self, filter: DeadFilter, *, limit: int, offset: int) -> Page[Task]:
        return await self._page(
            "count_dead",
            "list_dead",
            rows.dead_filter_params(filter),
            limit=limit,
            offset=offset,
            now=rows.now_us(),
        )

    async def replay_dead(self, task_ids: Sequence[int], *, actor: str) -> list[int]:
        if not task_ids:
            return []
        ids = list(task_ids)
        replayed = await self._db.write(lambda conn: _replay(conn, ids, actor))
        return self._replayed(replayed, actor)

    async def replay_dead_matching(
        self, filter: DeadFilter, *, limit: int, actor: str
    ) -> list[int]:
        if limit < 0:
            raise InvalidTask("limit must not be negative")
        if limit == 0:
            return []
        params = {**rows.dead_filter_params(filter), "limit": limit}

        def run(conn: sqlite3.Connection) -> list[int]:
            ids = [int(row[0]) for row in conn.execute(q("oldest_dead_ids"), params)]
            return _replay(conn, ids, actor) if ids else []

        return self._replayed(await self._db.write(run), actor)

    def _replayed(self, replayed: list[int], actor: str) -> list[int]:
        if replayed:
            self._wake()
            logger.info(
                "dead tasks replayed",
                extra={"actor": actor, "count": len(replayed), "task_ids": replayed[:100]},
            )
        return replayed

    async def delete_dead(self, task_ids: Sequence[int]) -> int:
        if not task_ids:
            return 0
        params = {"ids": rows.to_json(list(task_ids))}
        return await self._db.write(lambda conn: conn.execute(q("delete_dead"), params).rowcount)

    async def delete_dead_by_key(self, key: str) -> int:
        params = {"key": key}
        return await self._db.write(
            lambda conn: conn.execute(q("delete_dead_by_key"), params).rowcount
        )

    async def purge_dead(self, older_than: datetime) -> int:
        params = {"before": rows.to_us(older_than)}
        return await self._db.write(lambda conn: conn.execute(q("purge_dead"), params).rowcount)

    async def dead_stats(self) -> DeadStats:
        found = await self._db.read(lambda conn: conn.execute(q("dead_stats")).fetchall())
        by_queue: dict[str, int] = {}
        by_handler: dict[str, int] = {}
        oldest: int | None = None
        newest: int | None = None
        for row in found:
            if row["kind"] == "handler":
                by_handler[row["name"]] = int(row["n"])
                continue
            by_queue[row["name"]] = int(row["n"])
            oldest = row["oldest"] if oldest is None else min(oldest, row["oldest"])
            newest = row["newest"] if newest is None else max(newest, row["newest"])
        return DeadStats(
            total=sum(by_queue.values()),
            by_queue=by_queue,
            by_handler=by_handler,
            oldest_dead_at=rows.maybe_from_us(oldest),
            newest_dead_at=rows.maybe_from_us(newest),
        )

    # --- queues --------------------------------------------------------------------------------

    async def list_queues(self) -> list[QueueInfo]:
        params = {"name": None, "now": rows.now_us()}
        found = await self._db.read(lambda conn: conn.execute(q("queue_infos"), params).fetchall())
        return [rows.queue_info_from_row(row) for row in found]

    async def get_queue(self, name: str) -> QueueInfo | None:
        return await self._db.read(lambda conn: _queue_info(conn, name))

    async def _set_queue(self, query: str, name: str, value: object) -> QueueInfo:
        check_queue_name(name)

        def run(conn: sqlite3.Connection) -> QueueInfo | None:
            conn.execute(q(query), {"name": name, "value": value})
            return _queue_info(conn, name)

        info = await self._db.write(run)
        assert info is not None  # the upsert above created the row
        # A resume or a raised limit can make waiting tasks claimable.
        self._wake()
        logger.info(
            "queue setting changed", extra={"queue": name, "setting": query, "value": value}
        )
        return info

    async def set_queue_paused(self, name: str, paused: bool) -> QueueInfo:
        return await self._set_queue("set_queue_paused", name, bool(paused))

    async def set_queue_weight(self, name: str, weight: int) -> QueueInfo:
        return await self._set_queue("set_queue_weight", name, rows.check_weight(weight))

    async def reset_queue_weight(self, name: str) -> QueueInfo:
        return await self._set_queue("set_queue_weight", name, None)

    async def set_queue_concurrency(self, name: str, limit: int | None) -> QueueInfo:
        return await self._set_queue("set_queue_concurrency", name, rows.check_concurrency(limit))

    async def set_default_weights(self, weights: Mapping[str, int]) -> None:
        checked = {
            check_queue_name(name): rows.check_weight(weight) for name, weight in weights.items()
        }
        if not checked:
            return
        params = {"weights": rows.to_json(checked)}
        await self._db.write(lambda conn: conn.execute(q("set_default_weights"), params))

    async def set_global_paused(self, paused: bool) -> None:
        params = {"key": _GLOBAL_PAUSED, "value": rows.to_json(bool(paused))}
        await self._db.write(lambda conn: conn.execute(q("set_setting"), params))
        if not paused:
            self._wake()
        logger.info("global dequeue pause changed", extra={"paused": bool(paused)})

    async def is_global_paused(self) -> bool:
        params = {"key": _GLOBAL_PAUSED}
        found = await self._db.read(lambda conn: conn.execute(q("get_setting"), params).fetchone())
        return found is not None and found[0] == "true"


def _queue_info(conn: sqlite3.Connection, name: str) -> QueueInfo | None:
    params = {"name": name, "now": rows.now_us()}
    found = conn.execute(q("queue_infos"), params).fetchone()
    return None if found is None else rows.queue_info_from_row(found)


def _replay(conn: sqlite3.Connection, ids: list[int], actor: str) -> list[int]:
    params = {"ids": rows.to_json(ids), "actor": actor, "now": rows.now_us()}
    done = {int(row[0]) for row in conn.execute(q("replay_dead"), params)}
    # Report in the caller's order (oldest dead first for a filter), each id once.
    return [task_id for task_id in dict.fromkeys(ids) if task_id in done]
