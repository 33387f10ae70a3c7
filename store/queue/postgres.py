"""The PostgreSQL backend of :class:`store.queue.protocol.TaskQueue`, for several hosts.

Claims use ``FOR UPDATE SKIP LOCKED`` inside one PL/pgSQL call, idle workers wake on
``LISTEN longshore_queue`` (polling is only the fallback while that connection is down), and
concurrency caps are enforced with per-queue advisory locks. The SQL is in
``store/sql/postgres/queue.sql`` and ``migrations/``; the protocol's docstrings say the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from store.db.postgres import NotificationWaiter, PostgresDatabase
from store.errors import InvalidTask, TaskNotFound, TaskNotWaiting
from store.queue import _pg_rows as rows
from store.queue._pg_ops import PostgresOperatorActions
from store.queue.models import (
    DeadFilter,
    DeadStats,
    EnqueueResult,
    Failure,
    LateOutcome,
    Lease,
    NewTask,
    Page,
    QueueInfo,
    Task,
    TaskFilter,
    WorkerInfo,
    WorkerRecord,
    check_queue_name,
)
from store.sqlfiles import queries

logger = logging.getLogger(__name__)

CHANNEL = "longshore_queue"


class PostgresTaskQueue(PostgresOperatorActions):
    """A :class:`~store.queue.protocol.TaskQueue` stored in PostgreSQL."""

    def __init__(
        self, db: PostgresDatabase, *, key_retention: timedelta = timedelta(days=7)
    ) -> None:
        self._db = db
        self._key_retention = key_retention
        self._sql = queries("postgres", "queue")
        self._notifications = NotificationWaiter(db, CHANNEL, what="queue")

    async def close(self) -> None:
        """Close the LISTEN connection (the database itself belongs to the caller).

        A deliberate close is not a lost connection: it logs nothing, and a LISTEN
        connection still being opened by a waiter is closed as soon as it arrives instead
        of being kept (and later reported lost when the server drops it).
        """
        await self._notifications.close()

    # --- producing -----------------------------------------------------------------------

    async def enqueue(self, task: NewTask) -> EnqueueResult:
        """See :meth:`TaskQueue.enqueue`."""
        return (await self.enqueue_many([task]))[0]

    async def enqueue_many(self, tasks: Sequence[NewTask]) -> list[EnqueueResult]:
        """See :meth:`TaskQueue.enqueue_many`: one statement, one transaction."""
        batch = list(tasks)
        if not batch:
            return []
        found = await self._db.fetch(
            self._sql["enqueue"], *rows.enqueue_args(batch, self._key_retention)
        )
        self._notifications.poke()
        return rows.enqueue_results(batch, found)

    # --- consuming -----------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        limit: int,
        *,
        lease: timedelta,
        queues: Sequence[str] | None = None,
    ) -> list[Task]:
        """See :meth:`TaskQueue.claim`: one call of ``longshore_claim``."""
        if limit <= 0:
            return []
        names = None if queues is None else list(queues)
        found = await self._db.fetch(self._sql["claim"], worker_id, limit, lease, names)
        now = datetime.now(UTC)
        return [rows.task_from_row(row, now) for row in found]

    async def complete(self, worker_id: str, task_ids: Sequence[int]) -> int:
        """See :meth:`TaskQueue.complete`."""
        if not task_ids:
            return 0
        count: int = await self._db.fetchval(self._sql["complete"], worker_id, list(task_ids))
        return count

    async def complete_fenced(
        self, worker_id: str, leases: Sequence[Lease]
    ) -> dict[int, LateOutcome]:
        """See :meth:`TaskQueue.complete_fenced`: the leases still held in one statement,
        the others (rare: results written late) classified under row locks in another."""
        if not leases:
            return {}
        held = await self._db.fetch(
            self._sql["complete_held"],
            worker_id,
            [lease.task_id for lease in leases],
            [lease.attempt for lease in leases],
        )
        outcomes = {int(row[0]): LateOutcome.WRITTEN for row in held}
        late = [lease for lease in leases if lease.task_id not in outcomes]
        if late:
            found = await self._db.fetch(
                self._sql["complete_fenced"],
                worker_id,
                [lease.task_id for lease in late],
                [lease.attempt for lease in late],
            )
            outcomes.update({int(row[0]): LateOutcome(row[1]) for row in found})
        return outcomes

    async def fail(self, worker_id: str, failures: Sequence[Failure]) -> int:
        """See :meth:`TaskQueue.fail`."""
        if not failures:
            return 0
        row = await self._db.fetchrow(
            self._sql["fail"],
            worker_id,
            [f.task_id for f in failures],
            [f.error for f in failures],
            [f.retry_at for f in failures],
            [f.attempt for f in failures],
        )
        assert row is not None
        return int(row[0])

    async def release(self, worker_id: str, task_ids: Sequence[int]) -> int:
        """See :meth:`TaskQueue.release`."""
        if not task_ids:
            return 0
        row = await self._db.fetchrow(self._sql["release"], worker_id, list(task_ids))
        assert row is not None
        return self._woke(int(row[0]))

    async def heartbeat(self, worker_id: str, lease: timedelta) -> int:
        """See :meth:`TaskQueue.heartbeat`."""
        count: int = await self._db.fetchval(self._sql["heartbeat"], worker_id, lease)
        return count

    async def reclaim_expired(self) -> int:
        """See :meth:`TaskQueue.reclaim_expired`."""
        row = await self._db.fetchrow(self._sql["reclaim_expired"])
        assert row is not None
        return self._woke(int(row[0]))

    def _woke(self, count: int) -> int:
        # Work that became ready in this process wakes local workers without the NOTIFY
        # round trip.
        if count:
            self._notifications.poke()
        return count

    # The signature is the protocol's: a timeout parameter is the documented contract.
    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109
        """See :meth:`TaskQueue.wait_for_work`.

        Wakes on NOTIFY from any process and directly on this object's own writes; while
        the LISTEN connection is down it simply waits out ``timeout`` (polling fallback).
        """
        await self._notifications.wait(timeout)

    # --- inspecting and managing tasks --------------------------------------------------

    async def get_task(self, task_id: int) -> Task | None:
        """See :meth:`TaskQueue.get_task`."""
        row = await self._db.fetchrow(self._sql["get_task"], task_id)
        return None if row is None else rows.task_from_row(row)

    async def list_tasks(
        self, filter: TaskFilter, *, limit: int, offset: int, count_max: int | None = None
    ) -> Page[Task]:
        """See :meth:`TaskQueue.list_tasks`."""
        _check_page(limit, offset)
        listing, args, count, count_args = rows.task_listing(filter, count_max)
        async with self._db.connection() as connection:
            found = await connection.fetch(self._sql[listing], *args, limit, offset)
            total = await connection.fetchval(self._sql[count], *count_args)
        now = datetime.now(UTC)
        items = [rows.task_from_row(row, now) for row in found]
        return Page(items=items, total=int(total), limit=limit, offset=offset)

    async def cancel(self, task_id: int) -> Task:
        """See :meth:`TaskQueue.cancel`."""
        row = await self._db.fetchrow(self._sql["cancel"], task_id)
        if row is not None:
            return rows.task_from_row(row)
        state = await self._db.fetchval(self._sql["task_state"], task_id)
        if state is None:
            raise TaskNotFound(f"no task with id {task_id}")
        raise TaskNotWaiting(f"task {task_id} is {state}, only a waiting task can be cancelled")

    # --- dead-letter queue --------------------------------------------------------------

    async def list_dead(self, filter: DeadFilter, *, limit: int, offset: int) -> Page[Task]:
        """See :meth:`TaskQueue.list_dead`."""
        _check_page(limit, offset)
        args = rows.dead_filter_args(filter)
        async with self._db.connection() as connection:
            found = await connection.fetch(self._sql["list_dead"], *args, limit, offset)
            total = await connection.fetchval(self._sql["count_dead"], *args)
        items = [rows.task_from_row(row) for row in found]
        return Page(items=items, total=int(total), limit=limit, offset=offset)

    async def replay_dead(self, task_ids: Sequence[int], *, actor: str) -> list[int]:
        """See :meth:`TaskQueue.replay_dead`; ids come back in the order given."""
        if not task_ids:
            return []
        row = await self._db.fetchrow(self._sql["replay_dead"], list(task_ids), actor)
        assert row is not None
        replayed = set(row[0])
        self._woke(len(replayed))
        return list(dict.fromkeys(i for i in task_ids if i in replayed))

    async def replay_dead_matching(
        self, filter: DeadFilter, *, limit: int, actor: str
    ) -> list[int]:
        """See :meth:`TaskQueue.replay_dead_matching`; ids oldest dead first."""
        if limit <= 0:
            return []
        row = await self._db.fetchrow(
            self._sql["replay_dead_matching"], *rows.dead_filter_args(filter), limit, actor
        )
        assert row is not None
        replayed = [int(i) for i in row[0]]
        self._woke(len(replayed))
        return replayed

    async def delete_dead(self, task_ids: Sequence[int]) -> int:
        """See :meth:`TaskQueue.delete_dead`."""
        if not task_ids:
            return 0
        count: int = await self._db.fetchval(self._sql["delete_dead"], list(task_ids))
        return count

    async def delete_dead_by_key(self, key: str) -> int:
        """See :meth:`TaskQueue.delete_dead_by_key`."""
        count: int = await self._db.fetchval(self._sql["delete_dead_by_key"], key)
        return count

    async def purge_dead(self, older_than: datetime) -> int:
        """See :meth:`TaskQueue.purge_dead`."""
        count: int = await self._db.fetchval(self._sql["purge_dead"], older_than)
        return count

    async def dead_stats(self) -> DeadStats:
        """See :meth:`TaskQueue.dead_stats`."""
        async with (
            self._db.connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            by_queue = await connection.fetch(self._sql["dead_by_queue"])
            by_handler = await connection.fetch(self._sql["dead_by_handler"])
            bounds = await connection.fetchrow(self._sql["dead_bounds"])
        return DeadStats(
            total=int(bounds["total"]),
            by_queue={r["name"]: int(r["n"]) for r in by_queue},
            by_handler={r["name"]: int(r["n"]) for r in by_handler},
            oldest_dead_at=bounds["oldest"],
            newest_dead_at=bounds["newest"],
        )

    # --- queues ---------------------------------------------------------------------------

    async def list_queues(self) -> list[QueueInfo]:
        """See :meth:`TaskQueue.list_queues`."""
        found = await self._db.fetch(self._sql["list_queues"], None)
        return [rows.queue_from_row(row) for row in found]

    async def get_queue(self, name: str) -> QueueInfo | None:
        """See :meth:`TaskQueue.get_queue`."""
        row = await self._db.fetchrow(self._sql["list_queues"], name)
        return None if row is None else rows.queue_from_row(row)

    async def _set_queue(self, name: str, query: str, *args: object) -> QueueInfo:
        check_queue_name(name)
        await self._db.execute(self._sql[query], name, *args)
        info = await self.get_queue(name)
        assert info is not None
        return info

    async def set_queue_paused(self, name: str, paused: bool) -> QueueInfo:
        """See :meth:`TaskQueue.set_queue_paused`; resuming wakes idle workers."""
        info = await self._set_queue(name, "set_queue_paused", bool(paused))
        if not paused:
            await self._notify(name)
        return info

    async def set_queue_weight(self, name: str, weight: int) -> QueueInfo:
        """See :meth:`TaskQueue.set_queue_weight`."""
        return await self._set_queue(name, "set_queue_weight", _check_weight(weight))

    async def reset_queue_weight(self, name: str) -> QueueInfo:
        """See :meth:`TaskQueue.reset_queue_weight`."""
        return await self._set_queue(name, "reset_queue_weight")

    async def set_queue_concurrency(self, name: str, limit: int | None) -> QueueInfo:
        """See :meth:`TaskQueue.set_queue_concurrency`; raising a cap wakes idle workers."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidTask(f"concurrency limit must be at least 1 or None, got {limit!r}")
        info = await self._set_queue(name, "set_queue_concurrency", limit)
        await self._notify(name)
        return info

    async def set_default_weights(self, weights: Mapping[str, int]) -> None:
        """See :meth:`TaskQueue.set_default_weights`."""
        names = [check_queue_name(name) for name in weights]
        values = [_check_weight(weight) for weight in weights.values()]
        if names:
            await self._db.execute(self._sql["set_default_weights"], names, values)

    async def set_global_paused(self, paused: bool) -> None:
        """See :meth:`TaskQueue.set_global_paused`; resuming wakes idle workers."""
        await self._db.execute(self._sql["set_global_paused"], bool(paused))
        if not paused:
            await self._notify("")

    async def is_global_paused(self) -> bool:
        """See :meth:`TaskQueue.is_global_paused`."""
        return bool(await self._db.fetchval(self._sql["is_global_paused"]))

    async def _notify(self, queue: str) -> None:
        await self._db.execute(self._sql["notify"], queue)
        self._notifications.poke()

    # --- workers --------------------------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> None:
        """See :meth:`TaskQueue.register_worker`."""
        await self._db.execute(
            self._sql["register_worker"],
            info.worker_id,
            info.hostname,
            info.pid,
            info.concurrency,
            None if info.queues is None else list(info.queues),
            info.version,
        )

    async def deregister_worker(self, worker_id: str) -> None:
        """See :meth:`TaskQueue.deregister_worker`."""
        row = await self._db.fetchrow(self._sql["deregister_worker"], worker_id)
        assert row is not None
        self._woke(int(row[0]))

    async def list_workers(self) -> list[WorkerRecord]:
        """See :meth:`TaskQueue.list_workers`."""
        return [
            rows.worker_from_row(row) for row in await self._db.fetch(self._sql["list_workers"])
        ]

    async def sweep_stale_workers(self, older_than: timedelta) -> list[str]:
        """See :meth:`TaskQueue.sweep_stale_workers`."""
        row = await self._db.fetchrow(self._sql["sweep_stale_workers"], older_than)
        assert row is not None
        removed = [str(worker_id) for worker_id in row[0]]
        if removed:
            logger.info("stale workers swept", extra={"workers": removed})
            self._notifications.poke()
        return removed

    # --- maintenance ----------------------------------------------------------------------

    async def purge_done(self, older_than: datetime) -> int:
        """See :meth:`TaskQueue.purge_done`."""
        count: int = await self._db.fetchval(self._sql["purge_done"], older_than)
        return count

    async def purge_expired_keys(self) -> int:
        """See :meth:`TaskQueue.purge_expired_keys`."""
        return await self.purge_done(datetime.now(UTC) - self._key_retention)


def _check_weight(weight: int) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 1000:
        raise InvalidTask(f"queue weight must be an integer from 1 to 1000, got {weight!r}")
    return weight


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise InvalidTask(f"limit and offset must not be negative, got {limit} and {offset}")
