"""Conversions between SQLite rows and parameters and the queue's value objects.

Timestamps are stored as INTEGER microseconds since the Unix epoch, which round-trips a
Python ``datetime`` exactly; every datetime handed back is timezone-aware UTC.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from store.errors import InvalidTask
from store.queue.models import (
    DeadFilter,
    NewTask,
    QueueInfo,
    Task,
    TaskFilter,
    TaskState,
    WorkerInfo,
    WorkerRecord,
)
from store.queue.retry import RetryPolicy

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

Params = dict[str, Any]


def now_us() -> int:
    """The current time in epoch microseconds."""
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime (naive ones are rejected)."""
    if moment.tzinfo is None:
        raise InvalidTask("timestamps must be timezone-aware")
    return (moment - EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def maybe_from_us(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def to_json(value: Any) -> str:
    # ensure_ascii=False keeps non-ASCII text searchable as written.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def new_task_json(task: NewTask, now: int) -> dict[str, Any]:
    """One element of the JSON array that ``insert_tasks`` reads."""
    return {
        "queue": task.queue,
        "handler": task.handler,
        "payload": to_json(dict(task.payload)),
        "priority": task.priority,
        "run_at": now if task.run_at is None else to_us(task.run_at),
        "max_attempts": task.retry.max_attempts,
        "retry": to_json(task.retry.to_json()),
        "key": task.key,
    }


def task_state(row: sqlite3.Row, now: int) -> TaskState:
    stored = row["state"]
    if stored == "waiting":
        return TaskState.READY if row["run_at"] <= now else TaskState.SCHEDULED
    return TaskState(stored)


def task_from_row(row: sqlite3.Row, now: int) -> Task:
    return Task(
        id=row["id"],
        queue=row["queue"],
        handler=row["handler"],
        payload=json.loads(row["payload"]),
        priority=row["priority"],
        run_at=from_us(row["run_at"]),
        state=task_state(row, now),
        attempts=row["attempts"],
        retry=RetryPolicy.from_json(json.loads(row["retry"])),
        last_error=row["last_error"],
        key=row["key"],
        lease_owner=row["lease_owner"],
        lease_expires_at=maybe_from_us(row["lease_expires_at"]),
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
        dead_at=maybe_from_us(row["dead_at"]),
        replayed_by=row["replayed_by"],
        replayed_at=maybe_from_us(row["replayed_at"]),
        replay_count=row["replay_count"],
    )


def queue_info_from_row(row: sqlite3.Row) -> QueueInfo:
    return QueueInfo(
        name=row["name"],
        paused=bool(row["paused"]),
        weight=row["weight"] if row["weight"] is not None else row["default_weight"],
        weight_overridden=row["weight"] is not None,
        concurrency_limit=row["concurrency_limit"],
        ready=row["ready"],
        scheduled=row["scheduled"],
        running=row["running"],
        dead=row["dead"],
        completed=row["completed"],
        failed=row["failed"],
    )


def worker_params(info: WorkerInfo, now: int) -> Params:
    return {
        "worker_id": info.worker_id,
        "hostname": info.hostname,
        "pid": info.pid,
        "concurrency": info.concurrency,
        "queues": None if info.queues is None else to_json(list(info.queues)),
        "version": info.version,
        "now": now,
    }


def worker_from_row(row: sqlite3.Row) -> WorkerRecord:
    queues = row["queues"]
    return WorkerRecord(
        info=WorkerInfo(
            worker_id=row["worker_id"],
            hostname=row["hostname"],
            pid=row["pid"],
            concurrency=row["concurrency"],
            queues=None if queues is None else tuple(json.loads(queues)),
            version=row["version"],
        ),
        started_at=from_us(row["started_at"]),
        heartbeat_at=from_us(row["heartbeat_at"]),
        running=row["running"],
    )


def _search(text: str | None) -> str | None:
    # Folded as the SQL casefold() folds the columns it searches.
    return text.casefold() if text else None


def task_filter_params(flt: TaskFilter, now: int) -> Params:
    return {
        "state": None if flt.state is None else TaskState(flt.state).value,
        "queue": flt.queue,
        "handler": flt.handler,
        "search": _search(flt.search),
        "now": now,
    }


def dead_filter_params(flt: DeadFilter) -> Params:
    return {
        "queue": flt.queue,
        "handler": flt.handler,
        "search": _search(flt.search),
        "dead_before": None if flt.dead_before is None else to_us(flt.dead_before),
        "dead_after": None if flt.dead_after is None else to_us(flt.dead_after),
    }


def check_weight(weight: int) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 1000:
        raise InvalidTask(f"queue weight must be an integer from 1 to 1000, got {weight!r}")
    return weight


def check_concurrency(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidTask(f"concurrency limit must be a positive integer or None, got {limit!r}")
    return limit


def check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise InvalidTask("limit and offset must not be negative")
