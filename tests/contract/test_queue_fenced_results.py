"""Fenced results: a success is written against the lease its attempt held. A result held
back past its lease (a store outage, a paused worker) still settles the task when the lapse
is all that happened since, and never touches a task finished, failed or replayed since."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from store.queue.models import Failure, LateOutcome, Lease, TaskState, WorkerInfo
from store.queue.retry import RetryPolicy
from tests.contract.helpers import (
    LEASE,
    SHORT_LEASE,
    all_dead,
    claim_one,
    enqueue,
    sleep_past,
)


def lease(task) -> Lease:
    return Lease(task_id=task.id, attempt=task.attempts)


async def completed(queue) -> int:
    return sum(info.completed for info in await queue.list_queues())


async def test_a_held_lease_is_written_as_a_completion(queue):
    await enqueue(queue)
    keyless = await claim_one(queue, "w1")
    await enqueue(queue, key="k1")
    keyed = await claim_one(queue, "w1")

    outcomes = await queue.complete_fenced("w1", [lease(keyless), lease(keyed)])

    assert outcomes == {keyless.id: LateOutcome.WRITTEN, keyed.id: LateOutcome.WRITTEN}
    assert await queue.get_task(keyless.id) is None
    done = await queue.get_task(keyed.id)
    assert done.state is TaskState.DONE
    assert done.last_error is None
    assert await completed(queue) == 2


async def test_a_task_dead_lettered_only_by_its_lapsed_lease_is_taken_out_of_the_dlq(queue):
    await enqueue(queue, key="once", retry=RetryPolicy(max_attempts=1))
    claimed = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(claimed.lease_expires_at)
    assert await queue.reclaim_expired() == 1
    assert [t.id for t in await all_dead(queue)] == [claimed.id]

    outcomes = await queue.complete_fenced("w1", [lease(claimed)])

    assert outcomes == {claimed.id: LateOutcome.TAKEN_FROM_DLQ}
    assert await all_dead(queue) == []
    done = await queue.get_task(claimed.id)
    assert done.state is TaskState.DONE
    assert done.dead_at is None
    assert "late result of attempt 1 of worker w1" in done.last_error
    assert await completed(queue) == 1


async def test_a_reclaimed_task_not_yet_run_again_is_completed(queue):
    task = await enqueue(queue)
    claimed = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(claimed.lease_expires_at)
    assert await queue.reclaim_expired() == 1

    outcomes = await queue.complete_fenced("w1", [lease(claimed)])

    assert outcomes == {task.id: LateOutcome.TAKEN_FROM_QUEUE}
    assert await queue.get_task(task.id) is None
    assert await queue.claim("w2", 10, lease=LEASE) == []


async def test_a_swept_workers_late_result_settles_its_task(queue):
    await queue.register_worker(WorkerInfo(worker_id="w1", hostname="h", pid=1, concurrency=1))
    await enqueue(queue)
    claimed = await claim_one(queue, "w1")
    await asyncio.sleep(0.1)
    assert await queue.sweep_stale_workers(timedelta(seconds=0.05)) == ["w1"]

    outcomes = await queue.complete_fenced("w1", [lease(claimed)])

    assert outcomes == {claimed.id: LateOutcome.TAKEN_FROM_QUEUE}
    assert await queue.get_task(claimed.id) is None


async def test_a_task_running_again_is_completed_and_its_rerun_result_ignored(queue):
    await enqueue(queue, key="rerun")
    first = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(first.lease_expires_at)
    assert await queue.reclaim_expired() == 1
    second = await claim_one(queue, "w2")
    assert second.attempts == first.attempts + 1

    outcomes = await queue.complete_fenced("w1", [lease(first)])

    assert outcomes == {first.id: LateOutcome.SUPERSEDED}
    assert (await queue.get_task(first.id)).state is TaskState.DONE
    # The re-run no longer holds a lease: its own result changes nothing.
    assert await queue.complete_fenced("w2", [lease(second)]) == {second.id: LateOutcome.FINISHED}
    assert await queue.fail("w2", [Failure(task_id=second.id, error="x", retry_at=None)]) == 0
    assert await completed(queue) == 1


async def test_the_fence_is_the_attempt_a_later_claim_by_the_same_worker_is_not_its_own(queue):
    await enqueue(queue)
    first = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(first.lease_expires_at)
    assert await queue.reclaim_expired() == 1
    second = await claim_one(queue, "w1")

    # The second claim's own success is written as usual; the first's finds it finished.
    assert await queue.complete_fenced("w1", [lease(second)]) == {second.id: LateOutcome.WRITTEN}
    assert await queue.complete_fenced("w1", [lease(first)]) == {first.id: LateOutcome.FINISHED}


async def test_a_task_failed_replayed_or_gone_since_is_left_alone(queue):
    # Failed by its re-run and waiting for a retry: the late success does not touch it.
    await enqueue(queue, retry=RetryPolicy(max_attempts=5))
    failed_first = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(failed_first.lease_expires_at)
    await queue.reclaim_expired()
    rerun = await claim_one(queue, "w2")
    await queue.fail("w2", [Failure(task_id=rerun.id, error="boom", retry_at=None)])

    # Dead-lettered by its lapsed lease, then replayed by an operator: the replay runs.
    await enqueue(queue, queue="other", retry=RetryPolicy(max_attempts=1))
    replayed = await claim_one(queue, "w1", lease=SHORT_LEASE, queues=["other"])
    await sleep_past(replayed.lease_expires_at)
    await queue.reclaim_expired()
    assert await queue.replay_dead([replayed.id], actor="op") == [replayed.id]

    outcomes = await queue.complete_fenced(
        "w1", [lease(failed_first), lease(replayed), Lease(task_id=999_999, attempt=1)]
    )

    assert outcomes == {
        failed_first.id: LateOutcome.IGNORED,
        replayed.id: LateOutcome.IGNORED,
        999_999: LateOutcome.FINISHED,
    }
    assert (await queue.get_task(failed_first.id)).state is TaskState.DEAD
    assert (await queue.get_task(replayed.id)).state is TaskState.READY
    assert await completed(queue) == 0


async def test_a_failure_is_fenced_by_its_attempt_too(queue):
    await enqueue(queue, retry=RetryPolicy(max_attempts=5))
    first = await claim_one(queue, "w1", lease=SHORT_LEASE)
    await sleep_past(first.lease_expires_at)
    assert await queue.reclaim_expired() == 1
    second = await claim_one(queue, "w1")

    stale = Failure(task_id=first.id, error="late", retry_at=None, attempt=first.attempts)
    assert await queue.fail("w1", [stale]) == 0
    assert (await queue.get_task(first.id)).state is TaskState.RUNNING
    current = Failure(task_id=second.id, error="now", retry_at=None, attempt=second.attempts)
    assert await queue.fail("w1", [current]) == 1
    dead = await queue.get_task(first.id)
    assert (dead.state, dead.last_error) == (TaskState.DEAD, "now")
