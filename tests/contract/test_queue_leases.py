"""Leases and heartbeats: a running task is never run twice while its worker lives, and
is run again (at least once) when its worker dies."""

from __future__ import annotations

from datetime import timedelta

from store.queue.models import Failure, TaskState
from store.queue.retry import RetryPolicy
from tests.contract.helpers import (
    LEASE,
    SHORT_LEASE,
    claim_one,
    enqueue,
    now,
    sleep_past,
)


async def test_a_claimed_task_is_not_claimed_again_while_its_lease_lives(queue, open_queue):
    task = await enqueue(queue)
    await claim_one(queue, "w1")
    other = await open_queue()

    assert await queue.claim("w2", 10, lease=LEASE) == []
    assert await other.claim("w3", 10, lease=LEASE) == []
    assert await queue.reclaim_expired() == 0
    stored = await queue.get_task(task.id)
    assert stored.state is TaskState.RUNNING
    assert stored.lease_owner == "w1"


async def test_an_expired_lease_is_reclaimed_and_the_task_runs_again_with_attempts_kept(
    queue,
):
    task = await enqueue(queue)
    claimed = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(claimed.lease_expires_at)

    assert await queue.reclaim_expired() == 1

    waiting = await queue.get_task(task.id)
    assert waiting.state is TaskState.READY
    assert waiting.attempts == 1
    assert waiting.lease_owner is None
    assert waiting.lease_expires_at is None
    assert waiting.last_error  # notes the lost lease
    again = await claim_one(queue, "w2")
    assert again.id == task.id
    assert again.attempts == 2
    assert again.lease_owner == "w2"


async def test_reclaim_expired_leaves_live_leases_alone(queue):
    short = await enqueue(queue, queue="short")
    long = await enqueue(queue, queue="long")
    first = await claim_one(queue, "w1", lease=SHORT_LEASE, queues=["short"])
    await claim_one(queue, "w2", lease=LEASE, queues=["long"])
    await sleep_past(first.lease_expires_at)

    assert await queue.reclaim_expired() == 1
    assert (await queue.get_task(short.id)).state is TaskState.READY
    assert (await queue.get_task(long.id)).state is TaskState.RUNNING
    assert await queue.reclaim_expired() == 0


async def test_a_heartbeat_extends_leases_so_nothing_is_reclaimed(queue):
    tasks = [await enqueue(queue, payload={"i": i}) for i in range(2)]
    claimed = await queue.claim("w1", 2, lease=SHORT_LEASE)
    assert len(claimed) == 2

    assert await queue.heartbeat("w1", timedelta(seconds=60)) == 2
    await sleep_past(max(t.lease_expires_at for t in claimed))

    assert await queue.reclaim_expired() == 0
    for task in tasks:
        stored = await queue.get_task(task.id)
        assert stored.state is TaskState.RUNNING
        assert stored.lease_expires_at > now() + timedelta(seconds=30)
    assert await queue.complete("w1", [t.id for t in tasks]) == 2


async def test_a_heartbeat_renews_only_the_workers_own_leases(queue):
    await enqueue(queue)
    await enqueue(queue)
    await claim_one(queue, "w1", lease=SHORT_LEASE)
    other = await claim_one(queue, "w2", lease=SHORT_LEASE)

    assert await queue.heartbeat("w1", timedelta(seconds=60)) == 1
    assert await queue.heartbeat("nobody", timedelta(seconds=60)) == 0
    await sleep_past(other.lease_expires_at)

    assert await queue.reclaim_expired() == 1
    assert (await queue.get_task(other.id)).state is TaskState.READY


async def test_a_worker_that_lost_its_lease_cannot_complete_or_fail_the_task(queue):
    task = await enqueue(queue)
    first = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(first.lease_expires_at)
    assert await queue.reclaim_expired() == 1
    await claim_one(queue, "w2")

    assert await queue.complete("w1", [task.id]) == 0
    assert await queue.fail("w1", [Failure(task_id=task.id, error="late", retry_at=None)]) == 0
    assert await queue.release("w1", [task.id]) == 0

    stored = await queue.get_task(task.id)
    assert stored.state is TaskState.RUNNING
    assert stored.lease_owner == "w2"
    assert stored.attempts == 2
    assert await queue.complete("w2", [task.id]) == 1
    assert await queue.get_task(task.id) is None


async def test_another_worker_cannot_complete_or_fail_a_task_it_does_not_hold(queue):
    task = await enqueue(queue)
    await claim_one(queue, "w1")

    assert await queue.complete("w2", [task.id]) == 0
    assert await queue.fail("w2", [Failure(task_id=task.id, error="x", retry_at=None)]) == 0
    stored = await queue.get_task(task.id)
    assert stored.state is TaskState.RUNNING
    assert stored.lease_owner == "w1"


async def test_an_expired_lease_on_the_last_attempt_sends_the_task_to_the_dead_letter_queue(
    queue,
):
    task = await enqueue(queue, retry=RetryPolicy(max_attempts=1))
    claimed = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(claimed.lease_expires_at)

    assert await queue.reclaim_expired() == 1

    dead = await queue.get_task(task.id)
    assert dead.state is TaskState.DEAD
    assert dead.dead_at is not None
    assert dead.last_error
    assert await queue.claim("w2", 10, lease=LEASE) == []


async def test_a_released_task_is_ready_at_once_and_its_attempt_is_not_counted(queue):
    task = await enqueue(queue, run_at=now() - timedelta(seconds=5))
    claimed = await claim_one(queue, "w1")
    assert claimed.attempts == 1

    assert await queue.release("w1", [task.id]) == 1

    released = await queue.get_task(task.id)
    assert released.state is TaskState.READY
    assert released.attempts == 0
    assert released.lease_owner is None
    assert released.lease_expires_at is None
    again = await claim_one(queue, "w2")
    assert again.id == task.id
    assert again.attempts == 1


async def test_release_ignores_tasks_of_other_workers(queue):
    task = await enqueue(queue)
    await claim_one(queue, "w1")

    assert await queue.release("w2", [task.id]) == 0
    assert await queue.release("w1", [task.id + 1000]) == 0
    assert (await queue.get_task(task.id)).lease_owner == "w1"
