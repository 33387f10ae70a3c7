"""Operator actions of the PostgreSQL task queue (see :mod:`store.queue.operator`):
complete, fail, run now, reschedule and remove one task, force-unlock workers, preview the
dead-letter queue and forget empty queues.

Each single-task action is one transaction: the row is locked (``FOR UPDATE``), its state
checked, then changed, so a worker's claim or completion cannot slip in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from store.db.postgres import NotificationWaiter, PostgresDatabase, Row
from store.errors import TaskNotFound
from store.queue import _pg_rows as rows
from store.queue.models import DeadFilter, Reschedule, Task, TaskChange
from store.queue.operator import MAX_REASON, check_action, check_attempts

Apply = Callable[[Any, Task], Awaitable[Row | None]]


class PostgresOperatorActions:
    """The operator half of :class:`~store.queue.postgres.PostgresTaskQueue`."""

    _db: PostgresDatabase
    _sql: dict[str, str]
    _notifications: NotificationWaiter

    async def _act(self, action: str, lock: str, arg: object, apply: Apply) -> TaskChange | None:
        """Lock the row ``lock`` finds by ``arg``, check ``action`` against it and apply it;
        ``None`` when there is no such row."""
        async with self._db.connection() as connection, connection.transaction():
            found = await connection.fetchrow(self._sql[lock], arg)
            if found is None:
                return None
            before = rows.task_from_row(found)
            check_action(before, action)
            after = await apply(connection, before)
        change = TaskChange(
            before=before, after=None if after is None else rows.task_from_row(after)
        )
        if change.after is not None:
            self._notifications.poke()
        return change

    async def _on_id(self, task_id: int, action: str, apply: Apply) -> TaskChange:
        change = await self._act(action, "op_lock_task", task_id, apply)
        if change is None:
            raise TaskNotFound(f"no task with id {task_id}")
        return change

    async def complete_task(self, task_id: int) -> TaskChange:
        async def apply(connection: Any, task: Task) -> Row | None:
            if task.key is None:
                await connection.execute(self._sql["op_delete"], task.id)
                return None
            row: Row | None = await connection.fetchrow(self._sql["op_mark_done"], task.id)
            return row

        return await self._on_id(task_id, "complete", apply)

    async def fail_task(self, task_id: int, reason: str) -> TaskChange:
        async def apply(connection: Any, task: Task) -> Row | None:
            row: Row | None = await connection.fetchrow(
                self._sql["op_fail"], task.id, reason[:MAX_REASON]
            )
            return row

        return await self._on_id(task_id, "fail", apply)

    async def run_task_now(self, task_id: int) -> TaskChange:
        async def apply(connection: Any, task: Task) -> Row | None:
            row: Row | None = await connection.fetchrow(self._sql["op_run_now"], task.id)
            return row

        return await self._on_id(task_id, "run_now", apply)

    async def reschedule_task(self, task_id: int, change: Reschedule) -> TaskChange:
        async def apply(connection: Any, task: Task) -> Row | None:
            check_attempts(task, change.attempts, change.max_attempts)
            row: Row | None = await connection.fetchrow(
                self._sql["op_reschedule"],
                task.id,
                change.run_at,
                change.priority,
                change.attempts,
                change.max_attempts,
            )
            return row

        return await self._on_id(task_id, "reschedule", apply)

    async def remove_task_by_key(self, key: str, *, queue: str | None = None) -> TaskChange:
        async def apply(connection: Any, task: Task) -> Row | None:
            if queue is not None and task.queue != queue:
                raise _OtherQueue
            await connection.execute(self._sql["op_delete"], task.id)
            return None

        try:
            change = await self._act("remove", "op_lock_key", key, apply)
        except _OtherQueue:
            change = None
        if change is None:
            where = f" in queue {queue!r}" if queue is not None else ""
            raise TaskNotFound(f"no task holds key {key!r}{where}")
        return change

    async def force_unlock(self, worker_ids: Sequence[str]) -> dict[str, list[int]]:
        owners = sorted(set(worker_ids))
        if not owners:
            return {}
        released: dict[str, list[int]] = {}
        for row in await self._db.fetch(self._sql["force_unlock"], owners):
            released.setdefault(str(row["owner"]), []).append(int(row["id"]))
        if released:
            self._notifications.poke()
        return released

    async def dead_preview(self, filter: DeadFilter, *, limit: int | None) -> dict[str, int]:
        found = await self._db.fetch(
            self._sql["dead_preview"], *rows.dead_filter_args(filter), limit
        )
        return {str(row["queue"]): int(row["n"]) for row in found}

    async def gc_queues(self) -> list[str]:
        async with self._db.connection() as connection, connection.transaction():
            await connection.execute(self._sql["gc_lock"])
            found = await connection.fetch(self._sql["gc_queues"])
        return sorted(str(row["name"]) for row in found)


class _OtherQueue(Exception):
    """The key's task is in another queue than the one named (rolls the lock back)."""
