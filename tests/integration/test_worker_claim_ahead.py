"""Claiming ahead over real queues: fewer, larger claims while tasks finish quickly, and the
tasks claimed ahead of slow ones go back to the queue instead of waiting behind them.

Both backends (the ``queue`` fixture); timing bounds are generous, speed is for bench/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from service import claim_ahead
from store.queue.handlers import TaskContext
from store.queue.models import TaskState
from tests.integration.test_worker import (
    EVENTUALLY,
    enqueue,
    eventually,
    queue_info,
    registry,
    running,
)


class CountingQueue:
    """The real queue, with what each claim asked for and got recorded."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self.claims: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def claim(self, worker_id: str, limit: int, **kwargs: Any) -> Sequence[Any]:
        tasks = await self._queue.claim(worker_id, limit, **kwargs)
        self.claims.append([task.id for task in tasks])
        return tasks


async def test_short_tasks_are_claimed_ahead_in_fewer_larger_claims(queue):
    ids = await enqueue(queue, "builtin.noop", 600)
    counting = CountingQueue(queue)

    async with running(counting, registry(), concurrency=2, drain=True) as handle:
        await asyncio.wait_for(asyncio.shield(handle.task), EVENTUALLY)

    claimed = [task_id for claim in counting.claims for task_id in claim]
    assert sorted(claimed) == ids  # each task claimed exactly once
    assert max(len(claim) for claim in counting.claims) > 2  # beyond the free slots
    # Two slots and no claiming ahead would take at least 300 claims.
    assert len([claim for claim in counting.claims if claim]) < 150
    info = await queue_info(queue)
    assert (info.completed, info.failed, info.dead) == (600, 0, 0)


async def slow_tasks_claimed_ahead(
    queue: Any, counting: CountingQueue, slow: list[int], started: Sequence[object]
) -> None:
    """Wait until one slow task runs and the worker holds the two others, claimed ahead
    (leased, not started) behind it."""

    async def held() -> bool:
        claimed = {task_id for claim in counting.claims for task_id in claim}
        if len(claimed & set(slow)) < 3 or len(started) != 1:
            return False
        states = [await queue.get_task(task_id) for task_id in slow]
        return all(task.state is TaskState.RUNNING for task in states)

    await eventually(held, "slow tasks are claimed ahead behind a running one")


async def test_tasks_claimed_ahead_of_a_slow_one_go_back_to_the_queue(queue, open_queue):
    started: list[tuple[int, int, str]] = []
    release = asyncio.Event()

    async def slow(context: TaskContext) -> None:
        started.append((context.task.id, context.task.attempts, context.worker_id))
        await release.wait()

    await enqueue(queue, "builtin.noop", 300)
    slow_ids = await enqueue(queue, "test.slow", 3)
    counting = CountingQueue(queue)

    async with running(counting, registry(slow=slow), concurrency=1) as first:
        await slow_tasks_claimed_ahead(queue, counting, slow_ids, started)
        running_one = {task_id for task_id, _, _ in started}

        async def given_back() -> bool:
            waiting = [
                task
                for task in [await queue.get_task(task_id) for task_id in slow_ids]
                if task.id not in running_one
            ]
            return len(waiting) == 2 and all(
                task.state is TaskState.READY and task.attempts == 0 for task in waiting
            )

        await eventually(given_back, "the tasks held behind the slow one are given back")
        other = await open_queue()
        async with running(other, registry(slow=slow), concurrency=2) as second:
            await eventually(lambda: _true(len(started) == 3), "another worker takes them")
            release.set()
            await eventually(lambda: _completed(queue, 303), "every task completes once released")
        assert {worker for _, _, worker in started} == {
            first.worker.worker_id,
            second.worker.worker_id,
        }

    assert sorted(task_id for task_id, _, _ in started) == slow_ids
    assert all(attempt == 1 for _, attempt, _ in started)


async def test_shutdown_gives_back_the_tasks_claimed_ahead_uncounted(queue, monkeypatch):
    monkeypatch.setattr(claim_ahead, "HOLD_AHEAD", 3600.0)
    started: list[int] = []

    async def slow(context: TaskContext) -> None:
        started.append(context.task.id)
        await asyncio.sleep(3600)

    await enqueue(queue, "builtin.noop", 300)
    slow_ids = await enqueue(queue, "test.slow", 3)
    counting = CountingQueue(queue)

    async with running(counting, registry(slow=slow), concurrency=1, shutdown_grace=0.1) as handle:
        await slow_tasks_claimed_ahead(queue, counting, slow_ids, started)
        await handle.stopped()

    assert len(started) == 1
    for task_id in slow_ids:
        task = await queue.get_task(task_id)
        assert task.state is TaskState.READY
        assert task.lease_owner is None
        if task_id not in started:
            assert task.attempts == 0


async def _true(value: bool) -> bool:
    return value


async def _completed(queue: Any, count: int) -> bool:
    return (await queue_info(queue)).completed == count
