"""Claims: what a worker gets, in which order, and what it never gets."""

from __future__ import annotations

from datetime import timedelta

from store.queue.models import Priority, TaskState
from tests.contract.helpers import (
    CLOCK_SLACK,
    LEASE,
    assert_close,
    claim_one,
    enqueue,
    new_task,
    now,
    sleep_past,
)


async def test_a_claimed_task_is_running_with_one_attempt_and_a_lease(queue):
    task = await enqueue(queue, payload={"a": 1})

    before = now()
    [claimed] = await queue.claim("worker-1", 5, lease=timedelta(seconds=40))
    after = now()

    assert claimed.id == task.id
    assert claimed.state is TaskState.RUNNING
    assert claimed.attempts == 1
    assert claimed.payload == {"a": 1}
    assert claimed.lease_owner == "worker-1"
    assert claimed.lease_expires_at is not None
    assert (
        before + timedelta(seconds=40) - CLOCK_SLACK
        <= claimed.lease_expires_at
        <= after + timedelta(seconds=40) + CLOCK_SLACK
    )
    stored = await queue.get_task(task.id)
    assert stored.state is TaskState.RUNNING
    assert stored.attempts == 1
    assert stored.lease_owner == "worker-1"
    assert_close(stored.lease_expires_at, claimed.lease_expires_at)


async def test_claiming_an_empty_queue_returns_nothing(queue):
    assert await queue.claim("w1", 10, lease=LEASE) == []


async def test_claim_takes_lowest_priority_then_earliest_run_at_then_lowest_id(queue):
    t = now()
    late_low = await enqueue(queue, payload={"n": "p5"}, priority=5, run_at=t - timedelta(hours=2))
    newer_a = await enqueue(queue, payload={"n": "a"}, run_at=t - timedelta(seconds=10))
    newer_b = await enqueue(queue, payload={"n": "b"}, run_at=t - timedelta(seconds=10))
    older = await enqueue(queue, payload={"n": "old"}, run_at=t - timedelta(seconds=20))
    urgent = await enqueue(queue, payload={"n": "urgent"}, priority=-1)

    order = [(await claim_one(queue)).id for _ in range(5)]

    assert order == [urgent.id, older.id, newer_a.id, newer_b.id, late_low.id]
    assert await queue.claim("w1", 1, lease=LEASE) == []


async def test_a_batch_claim_takes_the_best_tasks_first(queue):
    tasks = [await enqueue(queue, priority=p) for p in (9, 3, 7, 1, 5)]
    by_priority = {t.priority: t.id for t in tasks}

    claimed = await queue.claim("w1", 3, lease=LEASE)

    assert {t.id for t in claimed} == {by_priority[1], by_priority[3], by_priority[5]}
    assert all(t.state is TaskState.RUNNING and t.attempts == 1 for t in claimed)


async def test_claim_returns_at_most_limit_tasks(queue):
    await queue.enqueue_many([new_task(payload={"i": i}) for i in range(10)])
    assert len(await queue.claim("w1", 4, lease=LEASE)) == 4
    assert len(await queue.claim("w1", 100, lease=LEASE)) == 6


async def test_named_priority_levels_run_in_their_order(queue):
    levels = [
        Priority.BULK_LOWEST,
        Priority.FAST_DEFAULT,
        Priority.BULK_LOW,
        Priority.EMERGENCY,
        Priority.BULK_DEFAULT,
        Priority.FAST_HIGH,
    ]
    for level in levels:
        await enqueue(queue, payload={"level": level.name}, priority=level)

    claimed = [await claim_one(queue) for _ in levels]

    assert [t.payload["level"] for t in claimed] == [
        "EMERGENCY",
        "FAST_HIGH",
        "FAST_DEFAULT",
        "BULK_DEFAULT",
        "BULK_LOW",
        "BULK_LOWEST",
    ]
    assert [t.priority for t in claimed] == [-20, -10, 0, 10, 20, 30]


async def test_a_task_is_not_claimed_before_its_run_at_and_is_once_due(queue):
    run_at = now() + timedelta(seconds=0.4)
    task = await enqueue(queue, run_at=run_at)

    assert await queue.claim("w1", 10, lease=LEASE) == []
    assert (await queue.get_task(task.id)).state is TaskState.SCHEDULED

    await sleep_past(run_at)

    assert (await queue.get_task(task.id)).state is TaskState.READY
    claimed = await claim_one(queue)
    assert claimed.id == task.id


async def test_claim_restricted_to_queues_takes_only_from_them(queue):
    a = await enqueue(queue, queue="a")
    b = await enqueue(queue, queue="b", priority=-100)
    c = await enqueue(queue, queue="c")

    claimed: set[int] = set()
    for _ in range(2):  # one claim call may take from one queue only
        claimed |= {t.id for t in await queue.claim("w1", 10, lease=LEASE, queues=["a", "c"])}

    assert claimed == {a.id, c.id}
    assert (await queue.get_task(b.id)).state is TaskState.READY
    assert await queue.claim("w1", 10, lease=LEASE, queues=["a", "c"]) == []
    assert [t.id for t in await queue.claim("w1", 10, lease=LEASE, queues=["b"])] == [b.id]


async def test_a_claim_spans_every_queue_with_ready_tasks(queue):
    ids = {(await enqueue(queue, queue=name)).id for name in ("x", "y", "z")}
    claimed: set[int] = set()
    for _ in range(3):
        claimed |= {t.id for t in await queue.claim("w1", 10, lease=LEASE)}
    assert claimed == ids
