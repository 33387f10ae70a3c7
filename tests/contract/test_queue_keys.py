"""Idempotency keys: ``replace``, ``preserve_run_at`` and ``dedupe``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from store.queue.models import EnqueueOutcome, Failure, KeyMode, TaskState
from tests.contract.helpers import (
    all_tasks,
    assert_close,
    claim_one,
    make_done,
    new_task,
    now,
)


async def test_replace_updates_a_waiting_task_in_place(queue):
    first_run = now() + timedelta(minutes=10)
    second_run = now() + timedelta(minutes=20)
    first = (
        await queue.enqueue(
            new_task("h1", key="report:1", payload={"v": 1}, priority=0, run_at=first_run)
        )
    ).task

    result = await queue.enqueue(
        new_task(
            "h1",
            key="report:1",
            key_mode=KeyMode.REPLACE,
            payload={"v": 2},
            priority=5,
            run_at=second_run,
        )
    )

    assert result.outcome is EnqueueOutcome.REPLACED
    assert result.task.id == first.id
    stored = await queue.get_task(first.id)
    assert stored.payload == {"v": 2}
    assert stored.priority == 5
    assert_close(stored.run_at, second_run)
    assert stored.state is TaskState.SCHEDULED
    assert [t.id for t in await all_tasks(queue)] == [first.id]


async def test_a_replaced_retrying_task_starts_afresh(queue):
    first = (await queue.enqueue(new_task(key="k"))).task
    claimed = await claim_one(queue)
    retry_at = now() + timedelta(hours=1)
    await queue.fail("w1", [Failure(task_id=claimed.id, error="boom", retry_at=retry_at)])
    waiting = await queue.get_task(first.id)
    assert (waiting.attempts, waiting.last_error) == (1, "boom")

    result = await queue.enqueue(new_task(key="k", payload={"fixed": True}))

    assert result.outcome is EnqueueOutcome.REPLACED
    assert result.task.id == first.id
    assert (result.task.attempts, result.task.last_error) == (0, None)
    stored = await queue.get_task(first.id)
    assert (stored.attempts, stored.last_error) == (0, None)


async def test_replace_can_bring_a_scheduled_task_forward_to_now(queue):
    first = (await queue.enqueue(new_task(key="k", run_at=now() + timedelta(hours=1)))).task
    result = await queue.enqueue(new_task(key="k", payload={"now": True}))

    assert result.task.id == first.id
    assert result.task.state is TaskState.READY
    claimed = await claim_one(queue)
    assert claimed.id == first.id
    assert claimed.payload == {"now": True}


async def test_preserve_run_at_updates_the_payload_but_keeps_the_run_time(queue):
    first_run = now() + timedelta(minutes=10)
    first = (await queue.enqueue(new_task(key="k", payload={"v": 1}, run_at=first_run))).task

    result = await queue.enqueue(
        new_task(
            key="k",
            key_mode=KeyMode.PRESERVE_RUN_AT,
            payload={"v": 2},
            run_at=now() + timedelta(minutes=30),
        )
    )

    assert result.outcome is EnqueueOutcome.REPLACED
    assert result.task.id == first.id
    stored = await queue.get_task(first.id)
    assert stored.payload == {"v": 2}
    assert_close(stored.run_at, first_run)
    assert len(await all_tasks(queue)) == 1


async def test_dedupe_returns_the_first_task_unchanged(queue):
    first = (await queue.enqueue(new_task("h", key="k", payload={"v": 1}, priority=3))).task

    result = await queue.enqueue(
        new_task("h", key="k", key_mode=KeyMode.DEDUPE, payload={"v": 2}, priority=-5)
    )

    assert result.outcome is EnqueueOutcome.DEDUPLICATED
    assert result.task.id == first.id
    assert result.task.payload == {"v": 1}
    assert result.task.priority == 3
    stored = await queue.get_task(first.id)
    assert stored.payload == {"v": 1}
    assert stored.priority == 3
    assert len(await all_tasks(queue)) == 1


async def test_dedupe_sees_a_completed_keyed_task(queue):
    done = await make_done(queue, "once-only", payload={"v": 1})

    result = await queue.enqueue(new_task(key="once-only", key_mode=KeyMode.DEDUPE))

    assert result.outcome is EnqueueOutcome.DEDUPLICATED
    assert result.task.id == done.id
    assert result.task.state is TaskState.DONE
    assert await queue.claim("w1", 10, lease=timedelta(seconds=30)) == []


async def test_dedupe_sees_a_running_task(queue):
    task = (await queue.enqueue(new_task(key="k"))).task
    await claim_one(queue)

    result = await queue.enqueue(new_task(key="k", key_mode=KeyMode.DEDUPE))

    assert result.outcome is EnqueueOutcome.DEDUPLICATED
    assert result.task.id == task.id
    assert result.task.state is TaskState.RUNNING


async def test_replacing_a_running_task_creates_a_new_one_and_the_running_one_keeps_running(
    queue,
):
    old = (await queue.enqueue(new_task(key="k", payload={"v": 1}))).task
    await claim_one(queue, "w1")

    result = await queue.enqueue(new_task(key="k", payload={"v": 2}))

    assert result.outcome is EnqueueOutcome.CREATED
    assert result.task.id != old.id
    assert result.task.key == "k"
    assert result.task.payload == {"v": 2}
    assert result.task.state is TaskState.READY
    running = await queue.get_task(old.id)
    assert running.state is TaskState.RUNNING
    assert running.lease_owner == "w1"
    assert running.payload == {"v": 1}
    assert running.key is None  # the key moved to the new task
    assert await queue.complete("w1", [old.id]) == 1
    claimed = await claim_one(queue, "w2")
    assert claimed.id == result.task.id


async def test_replacing_a_dead_task_creates_a_new_one_and_the_dead_one_stays_dead(queue):
    task = (await queue.enqueue(new_task(key="k", payload={"v": 1}))).task
    await claim_one(queue, "w1")
    await queue.fail("w1", [Failure(task_id=task.id, error="x", retry_at=None)])

    result = await queue.enqueue(new_task(key="k", payload={"v": 2}))

    assert result.outcome is EnqueueOutcome.CREATED
    assert result.task.id != task.id
    assert (await queue.get_task(task.id)).state is TaskState.DEAD


async def test_replacing_a_done_task_creates_a_new_one(queue):
    done = await make_done(queue, "k")
    result = await queue.enqueue(new_task(key="k", payload={"again": True}))

    assert result.outcome is EnqueueOutcome.CREATED
    assert result.task.id != done.id
    assert (await claim_one(queue)).id == result.task.id


@pytest.mark.parametrize("mode", list(KeyMode), ids=[m.value for m in KeyMode])
async def test_concurrent_enqueues_with_one_key_create_exactly_one_task(queue, open_queue, mode):
    other = await open_queue()
    producers = [queue, other]

    results = await asyncio.gather(
        *(
            producers[i % 2].enqueue(new_task(key="the-key", key_mode=mode, payload={"i": i}))
            for i in range(20)
        )
    )

    tasks = await all_tasks(queue)
    assert len(tasks) == 1
    assert {r.task.id for r in results} == {tasks[0].id}
    assert [r.outcome for r in results].count(EnqueueOutcome.CREATED) == 1
