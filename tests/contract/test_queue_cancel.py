"""Cancelling waiting tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from store.errors import TaskNotFound, TaskNotWaiting
from store.queue.models import TaskState
from tests.contract.helpers import LEASE, claim_one, enqueue, make_dead, make_done, now


async def test_cancelling_a_ready_task_deletes_it_and_returns_it(queue):
    task = await enqueue(queue, "h", payload={"a": 1})

    cancelled = await queue.cancel(task.id)

    assert cancelled.id == task.id
    assert cancelled.payload == {"a": 1}
    assert cancelled.handler == "h"
    assert await queue.get_task(task.id) is None
    assert await queue.claim("w1", 10, lease=LEASE) == []


async def test_cancelling_a_scheduled_task_deletes_it(queue):
    task = await enqueue(queue, run_at=now() + timedelta(hours=1))

    cancelled = await queue.cancel(task.id)

    assert cancelled.id == task.id
    assert cancelled.state is TaskState.SCHEDULED
    assert await queue.get_task(task.id) is None


async def test_cancelling_a_running_task_raises_task_not_waiting_and_it_keeps_running(queue):
    task = await enqueue(queue)
    await claim_one(queue, "w1")

    with pytest.raises(TaskNotWaiting):
        await queue.cancel(task.id)

    stored = await queue.get_task(task.id)
    assert stored.state is TaskState.RUNNING
    assert await queue.complete("w1", [task.id]) == 1


async def test_cancelling_a_dead_task_raises_task_not_waiting(queue):
    dead = await make_dead(queue)
    with pytest.raises(TaskNotWaiting):
        await queue.cancel(dead.id)
    assert (await queue.get_task(dead.id)).state is TaskState.DEAD


async def test_cancelling_a_done_task_raises_task_not_waiting(queue):
    done = await make_done(queue, "k")
    with pytest.raises(TaskNotWaiting):
        await queue.cancel(done.id)
    assert (await queue.get_task(done.id)).state is TaskState.DONE


async def test_cancelling_an_unknown_task_raises_task_not_found(queue):
    with pytest.raises(TaskNotFound):
        await queue.cancel(987654321)


async def test_a_cancelled_task_cannot_be_cancelled_twice(queue):
    task = await enqueue(queue)
    await queue.cancel(task.id)
    with pytest.raises(TaskNotFound):
        await queue.cancel(task.id)
