"""Small helpers shared by the queue contract tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from store.queue.models import DeadFilter, Failure, NewTask, TaskFilter, TaskState
from store.queue.retry import RetryPolicy

LEASE = timedelta(seconds=30)
SHORT_LEASE = timedelta(seconds=0.3)
# Timestamps may be stored with millisecond precision; compare within this.
PRECISION = timedelta(milliseconds=5)
# The database clock and ours are the same machine's, but allow for slow calls.
CLOCK_SLACK = timedelta(seconds=2)


def now() -> datetime:
    return datetime.now(UTC)


def new_task(handler: str = "test.handler", **kwargs: Any) -> NewTask:
    return NewTask(handler=handler, **kwargs)


def assert_close(actual: datetime | None, expected: datetime, within: timedelta = PRECISION):
    assert actual is not None
    assert actual.tzinfo is not None, "timestamps must be timezone-aware"
    assert abs(actual - expected) <= within, f"{actual} is not within {within} of {expected}"


async def enqueue(tq: Any, handler: str = "test.handler", **kwargs: Any) -> Any:
    """Enqueue one task and return it as persisted."""
    return (await tq.enqueue(new_task(handler, **kwargs))).task


async def claim_one(tq: Any, worker: str = "w1", **kwargs: Any) -> Any:
    """Claim exactly one task (the test arranged for one to be claimable)."""
    kwargs.setdefault("lease", LEASE)
    claimed = await tq.claim(worker, 1, **kwargs)
    assert len(claimed) == 1, f"expected one claimable task, got {claimed}"
    return claimed[0]


async def make_dead(
    tq: Any,
    handler: str = "test.handler",
    *,
    queue_name: str = "default",
    payload: dict[str, Any] | None = None,
    error: str = "boom",
    worker: str = "w-dead",
) -> Any:
    """Enqueue a task, run one attempt and fail it for good; return it as dead."""
    task = await enqueue(tq, handler, queue=queue_name, payload=payload or {})
    claimed = await tq.claim(worker, 1, lease=LEASE, queues=[queue_name])
    assert [t.id for t in claimed] == [task.id], "the test expected to claim this task"
    applied = await tq.fail(worker, [Failure(task_id=task.id, error=error, retry_at=None)])
    assert applied == 1
    dead = await tq.get_task(task.id)
    assert dead is not None
    assert dead.state is TaskState.DEAD
    return dead


async def make_done(tq: Any, key: str, **kwargs: Any) -> Any:
    """Enqueue a keyed task, run and complete it; return it as ``done``."""
    task = await enqueue(tq, key=key, **kwargs)
    claimed = await claim_one(tq, "w-done", queues=[task.queue])
    assert claimed.id == task.id
    assert await tq.complete("w-done", [task.id]) == 1
    done = await tq.get_task(task.id)
    assert done is not None
    assert done.state is TaskState.DONE
    return done


async def all_tasks(tq: Any, **filter_kwargs: Any) -> list[Any]:
    page = await tq.list_tasks(TaskFilter(**filter_kwargs), limit=10_000, offset=0)
    return list(page.items)


async def all_dead(tq: Any, **filter_kwargs: Any) -> list[Any]:
    page = await tq.list_dead(DeadFilter(**filter_kwargs), limit=10_000, offset=0)
    return list(page.items)


async def sleep_past(moment: datetime, margin: float = 0.05) -> None:
    """Sleep until ``moment`` has certainly passed."""
    delay = (moment - now()).total_seconds() + margin
    if delay > 0:
        await asyncio.sleep(delay)


NO_RETRY_DELAY = RetryPolicy(max_attempts=5, base_delay=0.0, jitter=0.0)
