"""Enqueue: what a producer is promised when ``enqueue`` / ``enqueue_many`` return."""

from __future__ import annotations

from datetime import timedelta

import pytest

from store.errors import StoreError
from store.queue.models import EnqueueOutcome, KeyMode, NewTask, Priority, TaskState
from store.queue.retry import RetryPolicy
from tests.contract.helpers import (
    CLOCK_SLACK,
    LEASE,
    all_tasks,
    assert_close,
    claim_one,
    new_task,
    now,
)


async def test_enqueue_returns_the_persisted_task_ready_with_no_attempts(queue):
    before = now()
    result = await queue.enqueue(
        NewTask(handler="report.build", payload={"report": "daily", "n": 3}, queue="reports")
    )
    after = now()

    task = result.task
    assert result.outcome is EnqueueOutcome.CREATED
    assert isinstance(task.id, int)
    assert task.queue == "reports"
    assert task.handler == "report.build"
    assert task.payload == {"report": "daily", "n": 3}
    assert task.priority == 0
    assert task.state is TaskState.READY
    assert task.attempts == 0
    assert task.last_error is None
    assert task.key is None
    assert task.lease_owner is None
    assert task.lease_expires_at is None
    assert task.dead_at is None
    assert task.replay_count == 0
    # run_at defaults to now.
    assert before - CLOCK_SLACK <= task.run_at <= after + CLOCK_SLACK
    assert task.run_at.tzinfo is not None
    assert before - CLOCK_SLACK <= task.created_at <= after + CLOCK_SLACK

    stored = await queue.get_task(task.id)
    assert stored is not None
    assert stored.id == task.id
    assert stored.payload == task.payload
    assert stored.state is TaskState.READY
    assert_close(stored.run_at, task.run_at)


async def test_enqueue_keeps_payload_priority_and_retry_policy_exactly(queue):
    policy = RetryPolicy(max_attempts=7, base_delay=2.5, factor=3.0, max_delay=99.0, jitter=0.5)
    payload = {"text": "grüße ☃", "nested": {"list": [1, 2.5, None, True]}, "empty": {}}
    task = (
        await queue.enqueue(
            NewTask(handler="h", payload=payload, priority=Priority.BULK_LOW, retry=policy)
        )
    ).task

    stored = await queue.get_task(task.id)
    assert stored.payload == payload
    assert stored.priority == 20
    assert stored.retry == policy
    assert stored.max_attempts == 7


async def test_enqueue_gives_every_task_its_own_increasing_id(queue):
    ids = [(await queue.enqueue(new_task(payload={"i": i}))).task.id for i in range(5)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


async def test_a_task_with_a_future_run_at_is_scheduled_and_not_claimed(queue):
    run_at = now() + timedelta(hours=1)
    task = (await queue.enqueue(new_task(run_at=run_at))).task

    assert task.state is TaskState.SCHEDULED
    assert_close(task.run_at, run_at)
    assert await queue.claim("w1", 10, lease=LEASE) == []
    assert (await queue.get_task(task.id)).state is TaskState.SCHEDULED


async def test_a_task_survives_reopening_the_database(queue, queue_factory):
    run_at = now() + timedelta(minutes=5)
    ready = (await queue.enqueue(new_task("a", payload={"x": 1}, key="k1"))).task
    later = (await queue.enqueue(new_task("b", payload={"y": 2}, run_at=run_at))).task

    await queue_factory.close(queue)
    reopened = await queue_factory.open()

    again = await reopened.get_task(ready.id)
    assert again is not None
    assert again.handler == "a"
    assert again.payload == {"x": 1}
    assert again.key == "k1"
    assert again.state is TaskState.READY
    scheduled = await reopened.get_task(later.id)
    assert scheduled.state is TaskState.SCHEDULED
    assert_close(scheduled.run_at, run_at)
    claimed = await claim_one(reopened)
    assert claimed.id == ready.id


async def test_enqueue_makes_a_new_queue_known(queue):
    assert await queue.get_queue("brand-new") is None
    await queue.enqueue(new_task(queue="brand-new"))

    info = await queue.get_queue("brand-new")
    assert info is not None
    assert info.name == "brand-new"
    assert info.ready == 1
    assert "brand-new" in [q.name for q in await queue.list_queues()]


async def test_enqueue_many_returns_results_in_input_order(queue):
    tasks = [
        new_task(f"handler.{i % 3}", queue=f"q{i % 2}", payload={"i": i}, priority=10 - i)
        for i in range(8)
    ]
    results = await queue.enqueue_many(tasks)

    assert len(results) == 8
    assert [r.task.payload for r in results] == [{"i": i} for i in range(8)]
    assert [r.task.handler for r in results] == [t.handler for t in tasks]
    assert [r.task.queue for r in results] == [t.queue for t in tasks]
    assert [r.task.priority for r in results] == [t.priority for t in tasks]
    assert all(r.outcome is EnqueueOutcome.CREATED for r in results)
    assert len({r.task.id for r in results}) == 8
    stored = await all_tasks(queue)
    assert sorted(t.id for t in stored) == sorted(r.task.id for r in results)


async def test_enqueue_many_of_nothing_writes_nothing(queue):
    assert await queue.enqueue_many([]) == []
    assert await all_tasks(queue) == []


async def test_enqueue_many_applies_key_modes_in_input_order(queue):
    results = await queue.enqueue_many(
        [
            new_task(key="k", payload={"v": 1}),
            new_task(key="k", payload={"v": 2}, key_mode=KeyMode.REPLACE),
            new_task(key="k", payload={"v": 3}, key_mode=KeyMode.DEDUPE),
            new_task(key="other", payload={"v": 4}),
        ]
    )

    assert [r.outcome for r in results] == [
        EnqueueOutcome.CREATED,
        EnqueueOutcome.REPLACED,
        EnqueueOutcome.DEDUPLICATED,
        EnqueueOutcome.CREATED,
    ]
    first_id = results[0].task.id
    assert results[1].task.id == first_id
    assert results[2].task.id == first_id
    assert results[1].task.payload == {"v": 2}
    assert results[2].task.payload == {"v": 2}
    assert (await queue.get_task(first_id)).payload == {"v": 2}
    assert len(await all_tasks(queue)) == 2


async def test_enqueue_many_writes_nothing_when_one_task_cannot_be_stored(queue):
    good = [new_task(payload={"i": i}) for i in range(3)]
    bad = new_task(payload={"ok": True})
    # NewTask validates on construction; tamper with a frozen one to get an item that
    # fails only while the batch is being written.
    object.__setattr__(bad, "payload", {"not json": object()})

    with pytest.raises((TypeError, ValueError, StoreError)):
        await queue.enqueue_many([*good, bad])

    assert await all_tasks(queue) == []
    assert await queue.claim("w1", 10, lease=LEASE) == []
