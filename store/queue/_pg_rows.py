"""Conversions between asyncpg rows and the queue's value objects (PostgreSQL backend)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from store.db.postgres import Row
from store.queue.models import (
    DeadFilter,
    EnqueueOutcome,
    EnqueueResult,
    NewTask,
    QueueInfo,
    Task,
    TaskFilter,
    TaskState,
    WorkerInfo,
    WorkerRecord,
)
from store.queue.retry import RetryPolicy

# Stored state of each listed state; ready and scheduled are both 'waiting', told apart by
# run_at (the flag is "run_at <= now()").
STORED_STATE: dict[TaskState, tuple[str, bool | None]] = {
    TaskState.READY: ("waiting", True),
    TaskState.SCHEDULED: ("waiting", False),
    TaskState.RUNNING: ("running", None),
    TaskState.DEAD: ("dead", None),
    TaskState.DONE: ("done", None),
}

_FINAL_STATES = {"running": TaskState.RUNNING, "dead": TaskState.DEAD, "done": TaskState.DONE}

# Retry policies repeat across tasks: decode each distinct one once.
_retry_cache: dict[tuple[Any, ...], RetryPolicy] = {}


def _retry(data: dict[str, Any]) -> RetryPolicy:
    key = tuple(sorted(data.items()))
    policy = _retry_cache.get(key)
    if policy is None:
        policy = RetryPolicy.from_json(data)
        if len(_retry_cache) < 1024:
            _retry_cache[key] = policy
    return policy


def task_from_row(row: Row, now: datetime | None = None) -> Task:
    """A :class:`Task` from a ``tasks`` row (or a composite of that type)."""
    stored = row["state"]
    run_at: datetime = row["run_at"]
    if stored == "waiting":
        ready = run_at <= (now or datetime.now(UTC))
        state = TaskState.READY if ready else TaskState.SCHEDULED
    else:
        state = _FINAL_STATES[stored]
    return Task(
        id=row["id"],
        queue=row["queue"],
        handler=row["handler"],
        payload=row["payload"],
        priority=row["priority"],
        run_at=run_at,
        state=state,
        attempts=row["attempts"],
        retry=_retry(row["retry"]),
        last_error=row["last_error"],
        key=row["key"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        dead_at=row["dead_at"],
        replayed_by=row["replayed_by"],
        replayed_at=row["replayed_at"],
        replay_count=row["replay_count"],
    )


def enqueue_args(tasks: Sequence[NewTask], key_retention: timedelta) -> list[Any]:
    """The parallel arrays of the ``enqueue`` query, in its parameter order (payloads and
    retry policies as JSON text)."""
    return [
        [t.queue for t in tasks],
        [t.handler for t in tasks],
        [t.payload_json for t in tasks],
        [int(t.priority) for t in tasks],
        [t.run_at for t in tasks],
        [t.key for t in tasks],
        [t.key_mode.value for t in tasks],
        [_retry_json(t) for t in tasks],
        [t.retry.max_attempts for t in tasks],
        key_retention,
    ]


def _retry_json(task: NewTask) -> str:
    return json.dumps(task.retry.to_json(), separators=(",", ":"))


def enqueue_results(tasks: Sequence[NewTask], found: Sequence[Row]) -> list[EnqueueResult]:
    """The results of the ``enqueue`` query in input order (its rows carry ``ord``)."""
    results: list[EnqueueResult | None] = [None] * len(tasks)
    now = datetime.now(UTC)
    for row in found:
        results[row["ord"] - 1] = EnqueueResult(
            task=task_from_row(row, now), outcome=EnqueueOutcome(row["outcome"])
        )
    assert all(result is not None for result in results), "enqueue lost a task"
    return [result for result in results if result is not None]


def like_pattern(search: str | None) -> str | None:
    """An ILIKE pattern matching ``search`` as a literal substring."""
    if search is None or search == "":
        return None
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def task_filter_args(filter: TaskFilter) -> list[Any]:
    """Parameters $1-$5 of ``list_tasks`` / ``count_tasks``."""
    stored, ready = STORED_STATE[filter.state] if filter.state else (None, None)
    return [filter.queue, stored, ready, filter.handler, like_pattern(filter.search)]


def task_listing(
    filter: TaskFilter, count_max: int | None
) -> tuple[str, list[Any], str, list[Any]]:
    """The statement listing a page of tasks with its parameters before limit and offset
    (``list_tasks_dead`` for dead tasks: their own index, by id), and the statement counting
    the total with its parameters: exact, or at most ``count_max`` (``count_tasks_capped``)."""
    args = task_filter_args(filter)
    listing: tuple[str, list[Any]] = ("list_tasks", args)
    if filter.state == TaskState.DEAD:
        listing = ("list_tasks_dead", [filter.queue, filter.handler, like_pattern(filter.search)])
    if count_max is None:
        return *listing, "count_tasks", args
    return *listing, "count_tasks_capped", [*args, max(0, count_max)]


def dead_filter_args(filter: DeadFilter) -> list[Any]:
    """Parameters $1-$5 of the dead-letter listings."""
    return [
        filter.queue,
        filter.handler,
        like_pattern(filter.search),
        filter.dead_before,
        filter.dead_after,
    ]


def queue_from_row(row: Row) -> QueueInfo:
    """A :class:`QueueInfo` from a ``list_queues`` row."""
    return QueueInfo(
        name=row["name"],
        paused=row["paused"],
        weight=row["weight"],
        weight_overridden=row["weight_overridden"],
        concurrency_limit=row["concurrency_limit"],
        ready=row["ready"],
        scheduled=row["scheduled"],
        running=row["running"],
        dead=row["dead"],
        completed=row["completed"],
        failed=row["failed"],
    )


def worker_from_row(row: Row) -> WorkerRecord:
    """A :class:`WorkerRecord` from a ``list_workers`` row."""
    queues = row["queues"]
    return WorkerRecord(
        info=WorkerInfo(
            worker_id=row["worker_id"],
            hostname=row["hostname"],
            pid=row["pid"],
            concurrency=row["concurrency"],
            queues=None if queues is None else tuple(queues),
            version=row["version"],
        ),
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        running=row["running"],
    )
