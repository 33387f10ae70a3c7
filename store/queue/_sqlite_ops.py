"""Operator actions of the SQLite task queue (see :mod:`store.queue.operator`): complete,
fail, run now, reschedule and remove one task, force-unlock workers, preview the
dead-letter queue and forget empty queues.

Each action is one write transaction: the row is read, checked and changed with nothing in
between (the database has one writer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from store.errors import TaskNotFound
from store.queue import _sqlite_rows as rows
from store.queue._sqlite_admin import SqliteQueueAdmin, q
from store.queue.models import DeadFilter, Reschedule, Task, TaskChange
from store.queue.operator import MAX_REASON, check_action, check_attempts

Apply = Callable[[sqlite3.Connection, Task, int], sqlite3.Row | None]


class SqliteOperatorActions(SqliteQueueAdmin):
    """The operator half of :class:`~store.queue.sqlite.SqliteTaskQueue`."""

    async def _act(
        self, action: str, find: Callable[[sqlite3.Connection], sqlite3.Row | None], apply: Apply
    ) -> TaskChange:
        now = rows.now_us()

        def run(conn: sqlite3.Connection) -> TaskChange:
            found = find(conn)
            if found is None:
                raise TaskNotFound("no such task")
            before = rows.task_from_row(found, now)
            check_action(before, action)
            after = apply(conn, before, now)
            return TaskChange(
                before=before, after=None if after is None else rows.task_from_row(after, now)
            )

        change = await self._db.write(run)
        if change.after is not None and change.after.state is not change.before.state:
            self._wake()
        return change

    async def _act_on_id(self, task_id: int, action: str, apply: Apply) -> TaskChange:
        try:
            return await self._act(
                action, lambda conn: conn.execute(q("get_task"), {"id": task_id}).fetchone(), apply
            )
        except TaskNotFound:
            raise TaskNotFound(f"no task with id {task_id}") from None

    async def complete_task(self, task_id: int) -> TaskChange:
        def apply(conn: sqlite3.Connection, task: Task, now: int) -> sqlite3.Row | None:
            if task.key is None:
                conn.execute(q("delete_task"), {"id": task.id})
                return None
            row: sqlite3.Row | None = conn.execute(
                q("op_mark_done"), {"id": task.id, "now": now}
            ).fetchone()
            return row

        return await self._act_on_id(task_id, "complete", apply)

    async def fail_task(self, task_id: int, reason: str) -> TaskChange:
        text = reason[:MAX_REASON]

        def apply(conn: sqlite3.Connection, task: Task, now: int) -> sqlite3.Row | None:
            params = {"id": task.id, "now": now, "reason": text}
            row: sqlite3.Row | None = conn.execute(q("op_fail"), params).fetchone()
            return row

        return await self._act_on_id(task_id, "fail", apply)

    async def run_task_now(self, task_id: int) -> TaskChange:
        def apply(conn: sqlite3.Connection, task: Task, now: int) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                q("op_run_now"), {"id": task.id, "now": now}
            ).fetchone()
            return row

        change = await self._act_on_id(task_id, "run_now", apply)
        self._wake()
        return change

    async def reschedule_task(self, task_id: int, change: Reschedule) -> TaskChange:
        def apply(conn: sqlite3.Connection, task: Task, now: int) -> sqlite3.Row | None:
            check_attempts(task, change.attempts, change.max_attempts)
            params = {
                "id": task.id,
                "now": now,
                "run_at": None if change.run_at is None else rows.to_us(change.run_at),
                "priority": change.priority,
                "attempts": change.attempts,
                "max_attempts": change.max_attempts,
            }
            row: sqlite3.Row | None = conn.execute(q("op_reschedule"), params).fetchone()
            return row

        result = await self._act_on_id(task_id, "reschedule", apply)
        self._wake()
        return result

    async def remove_task_by_key(self, key: str, *, queue: str | None = None) -> TaskChange:
        def find(conn: sqlite3.Connection) -> sqlite3.Row | None:
            found: sqlite3.Row | None = conn.execute(q("task_by_key"), {"key": key}).fetchone()
            if found is not None and queue is not None and found["queue"] != queue:
                return None
            return found

        def apply(conn: sqlite3.Connection, task: Task, _now: int) -> sqlite3.Row | None:
            conn.execute(q("delete_task"), {"id": task.id})
            return None

        try:
            return await self._act("remove", find, apply)
        except TaskNotFound:
            where = f" in queue {queue!r}" if queue is not None else ""
            raise TaskNotFound(f"no task holds key {key!r}{where}") from None

    async def force_unlock(self, worker_ids: Sequence[str]) -> dict[str, list[int]]:
        owners = sorted(set(worker_ids))
        if not owners:
            return {}
        params = {"owners": rows.to_json(owners), "now": rows.now_us()}

        def run(conn: sqlite3.Connection) -> dict[str, list[int]]:
            released: dict[str, list[int]] = {}
            for row in conn.execute(q("op_owned"), params).fetchall():
                released.setdefault(str(row["lease_owner"]), []).append(int(row["id"]))
            if released:
                conn.execute(q("op_release_owned"), params)
            return released

        released = await self._db.write(run)
        if released:
            self._wake()
        return released

    async def dead_preview(self, filter: DeadFilter, *, limit: int | None) -> dict[str, int]:
        params = {**rows.dead_filter_params(filter), "limit": -1 if limit is None else limit}
        found = await self._db.read(lambda conn: conn.execute(q("dead_preview"), params).fetchall())
        return {str(row["queue"]): int(row["n"]) for row in found}

    async def gc_queues(self) -> list[str]:
        found = await self._db.write(lambda conn: conn.execute(q("gc_queues")).fetchall())
        return sorted(str(row["name"]) for row in found)
