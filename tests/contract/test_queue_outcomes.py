"""Outcomes of an attempt: complete, fail with a retry, fail for good."""

from __future__ import annotations

from datetime import timedelta

from store.queue.models import EnqueueOutcome, Failure, KeyMode, TaskState
from store.queue.retry import RetryPolicy
from tests.contract.helpers import (
    CLOCK_SLACK,
    LEASE,
    all_dead,
    assert_close,
    claim_one,
    enqueue,
    make_done,
    new_task,
    now,
)


async def test_completing_a_task_without_a_key_deletes_it(queue):
    task = await enqueue(queue)
    await claim_one(queue, "w1")

    assert await queue.complete("w1", [task.id]) == 1

    assert await queue.get_task(task.id) is None
    assert await queue.claim("w1", 10, lease=LEASE) == []


async def test_completing_a_keyed_task_keeps_it_as_done(queue):
    task = await enqueue(queue, key="nightly:2026-01-01")
    await claim_one(queue, "w1")

    assert await queue.complete("w1", [task.id]) == 1

    done = await queue.get_task(task.id)
    assert done.state is TaskState.DONE
    assert done.key == "nightly:2026-01-01"
    assert done.lease_owner is None
    assert await queue.claim("w1", 10, lease=LEASE) == []


async def test_complete_counts_only_the_tasks_it_completed(queue):
    a = await enqueue(queue)
    b = await enqueue(queue)
    waiting = await enqueue(queue, run_at=now() + timedelta(hours=1))
    claimed = await queue.claim("w1", 10, lease=LEASE)
    assert {t.id for t in claimed} == {a.id, b.id}

    assert await queue.complete("w1", [a.id, b.id, waiting.id, 987654321]) == 2
    assert (await queue.get_task(waiting.id)).state is TaskState.SCHEDULED


async def test_purge_done_removes_done_tasks_completed_before_the_cutoff(queue):
    done = await make_done(queue, "k1")

    assert await queue.purge_done(now() - timedelta(hours=1)) == 0
    assert (await queue.get_task(done.id)).state is TaskState.DONE

    assert await queue.purge_done(now() + timedelta(seconds=1)) == 1
    assert await queue.get_task(done.id) is None
    # The key is free again.
    result = await queue.enqueue(new_task(key="k1", key_mode=KeyMode.DEDUPE))
    assert result.outcome is EnqueueOutcome.CREATED


async def test_purge_done_leaves_waiting_running_and_dead_tasks_alone(queue):
    waiting = await enqueue(queue, key="w", run_at=now() + timedelta(hours=1))
    running = await enqueue(queue, key="r")
    await claim_one(queue, "w1")

    assert await queue.purge_done(now() + timedelta(hours=2)) == 0
    assert (await queue.get_task(waiting.id)).state is TaskState.SCHEDULED
    assert (await queue.get_task(running.id)).state is TaskState.RUNNING


async def test_a_failure_with_retry_at_makes_the_task_wait_until_then(queue):
    task = await enqueue(queue)
    await claim_one(queue, "w1")
    retry_at = now() + timedelta(minutes=5)

    applied = await queue.fail(
        "w1", [Failure(task_id=task.id, error="connection refused", retry_at=retry_at)]
    )

    assert applied == 1
    waiting = await queue.get_task(task.id)
    assert waiting.state is TaskState.SCHEDULED
    assert_close(waiting.run_at, retry_at)
    assert waiting.last_error == "connection refused"
    assert waiting.attempts == 1
    assert waiting.lease_owner is None
    assert waiting.lease_expires_at is None
    assert waiting.dead_at is None
    assert await queue.claim("w1", 10, lease=LEASE) == []


async def test_a_failure_with_a_past_retry_at_is_ready_again_at_once(queue):
    task = await enqueue(queue)
    await claim_one(queue, "w1")

    await queue.fail("w1", [Failure(task_id=task.id, error="e1", retry_at=now())])

    assert (await queue.get_task(task.id)).state is TaskState.READY
    again = await claim_one(queue, "w2")
    assert again.id == task.id
    assert again.attempts == 2
    assert again.last_error == "e1"


async def test_a_failure_without_retry_at_sends_the_task_to_the_dead_letter_queue(queue):
    task = await enqueue(queue, payload={"big": "x" * 1000})
    await claim_one(queue, "w1")

    before = now()
    assert await queue.fail("w1", [Failure(task_id=task.id, error="bad input", retry_at=None)])
    after = now()

    dead = await queue.get_task(task.id)
    assert dead.state is TaskState.DEAD
    assert dead.last_error == "bad input"
    assert dead.payload == {"big": "x" * 1000}
    assert dead.lease_owner is None
    assert before - CLOCK_SLACK <= dead.dead_at <= after + CLOCK_SLACK
    assert [t.id for t in await all_dead(queue)] == [task.id]
    assert await queue.claim("w1", 10, lease=LEASE) == []


async def test_fail_applies_each_failure_and_counts_them(queue):
    a = await enqueue(queue)
    b = await enqueue(queue)
    await queue.claim("w1", 2, lease=LEASE)

    applied = await queue.fail(
        "w1",
        [
            Failure(task_id=a.id, error="ea", retry_at=now() + timedelta(hours=1)),
            Failure(task_id=b.id, error="eb", retry_at=None),
            Failure(task_id=123456789, error="unknown", retry_at=None),
        ],
    )

    assert applied == 2
    assert (await queue.get_task(a.id)).state is TaskState.SCHEDULED
    assert (await queue.get_task(b.id)).state is TaskState.DEAD


async def test_a_task_that_fails_every_attempt_ends_dead_after_max_attempts(queue):
    policy = RetryPolicy(max_attempts=2, base_delay=0.0, jitter=0.0)
    task = await enqueue(queue, retry=policy)
    verdicts = []

    for _ in range(3):
        claimed = await queue.claim("w1", 1, lease=LEASE)
        if not claimed:
            break
        [running] = claimed
        retry_at = running.retry.next_run_at(attempts=running.attempts, now=now())
        verdicts.append(retry_at is not None)
        await queue.fail(
            "w1",
            [Failure(task_id=running.id, error=f"attempt {running.attempts}", retry_at=retry_at)],
        )

    assert verdicts == [True, False]
    dead = await queue.get_task(task.id)
    assert dead.state is TaskState.DEAD
    assert dead.attempts == 2
    assert dead.last_error == "attempt 2"
