"""Operator actions on one task (complete, fail, run now, reschedule, remove by key),
force-unlock, the dead-letter preview and the queue garbage collection, on every backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from store.errors import InvalidTask, TaskNotFound, TaskNotWaiting
from store.queue.models import DeadFilter, KeyMode, Reschedule, TaskState
from tests.contract.helpers import (
    LEASE,
    claim_one,
    enqueue,
    make_dead,
    make_done,
    new_task,
    now,
)


async def test_completing_a_waiting_task_deletes_it_or_keeps_its_key_as_done(queue):
    plain = await enqueue(queue, run_at=now() + timedelta(hours=1))
    keyed = await enqueue(queue, key="k-1")

    change = await queue.complete_task(plain.id)
    assert change.before.state is TaskState.SCHEDULED
    assert change.after is None
    assert await queue.get_task(plain.id) is None

    change = await queue.complete_task(keyed.id)
    assert change.after is not None
    assert change.after.state is TaskState.DONE
    deduped = await queue.enqueue(new_task(key="k-1", key_mode=KeyMode.DEDUPE))
    assert deduped.task.id == keyed.id
    assert await queue.claim("w1", 10, lease=LEASE) == []
    # Operator actions are not verdicts: the counters are untouched.
    info = await queue.get_queue("default")
    assert (info.completed, info.failed) == (0, 0)


async def test_completing_a_dead_task_takes_it_out_of_the_dead_letter_queue(queue):
    dead = await make_dead(queue)
    change = await queue.complete_task(dead.id)
    assert change.before.state is TaskState.DEAD
    assert await queue.get_task(dead.id) is None
    assert (await queue.dead_stats()).total == 0


async def test_a_running_task_is_refused_by_every_action_and_keeps_its_lease(queue):
    task = await enqueue(queue, key="busy")
    await claim_one(queue, "w-busy")
    for action in (
        queue.complete_task(task.id),
        queue.fail_task(task.id, "no"),
        queue.run_task_now(task.id),
        queue.reschedule_task(task.id, Reschedule(priority=3)),
        queue.remove_task_by_key("busy"),
    ):
        with pytest.raises(TaskNotWaiting, match="w-busy"):
            await action
    kept = await queue.get_task(task.id)
    assert kept.state is TaskState.RUNNING
    assert kept.lease_owner == "w-busy"
    assert await queue.complete("w-busy", [task.id]) == 1


async def test_unknown_tasks_are_not_found(queue):
    with pytest.raises(TaskNotFound):
        await queue.complete_task(987654)
    with pytest.raises(TaskNotFound):
        await queue.fail_task(987654, "x")
    with pytest.raises(TaskNotFound):
        await queue.run_task_now(987654)
    with pytest.raises(TaskNotFound):
        await queue.reschedule_task(987654, Reschedule(priority=1))
    with pytest.raises(TaskNotFound, match="nope"):
        await queue.remove_task_by_key("nope")


async def test_failing_a_task_dead_letters_it_with_the_reason(queue):
    task = await enqueue(queue, queue="mail")
    change = await queue.fail_task(task.id, "bad address")
    assert change.after.state is TaskState.DEAD
    assert change.after.last_error == "bad address"
    assert change.after.dead_at is not None
    assert (await queue.dead_stats()).by_queue == {"mail": 1}
    with pytest.raises(TaskNotWaiting, match="already in the dead-letter queue"):
        await queue.fail_task(task.id, "again")
    with pytest.raises(TaskNotWaiting, match="replay"):
        await queue.run_task_now(task.id)


async def test_run_now_makes_a_scheduled_task_claimable_at_once(queue):
    task = await enqueue(queue, run_at=now() + timedelta(days=1))
    assert await queue.claim("w1", 1, lease=LEASE) == []
    change = await queue.run_task_now(task.id)
    assert change.after.state is TaskState.READY
    assert (await claim_one(queue)).id == task.id


async def test_reschedule_changes_the_given_fields_only(queue):
    task = await enqueue(queue, priority=5)
    later = now() + timedelta(hours=2)
    change = await queue.reschedule_task(
        task.id, Reschedule(run_at=later, attempts=2, max_attempts=7)
    )
    after = change.after
    assert after.state is TaskState.SCHEDULED
    assert abs((after.run_at - later).total_seconds()) < 0.01
    assert (after.priority, after.attempts, after.max_attempts) == (5, 2, 7)
    assert after.retry.max_attempts == 7
    again = await queue.get_task(task.id)
    assert again.retry.max_attempts == 7
    assert again.attempts == 2
    change = await queue.reschedule_task(task.id, Reschedule(priority=-3, run_at=now()))
    assert change.after.priority == -3
    assert change.after.state is TaskState.READY


async def test_reschedule_refuses_to_leave_a_task_without_attempts(queue):
    task = await enqueue(queue)
    with pytest.raises(InvalidTask, match="attempts"):
        await queue.reschedule_task(task.id, Reschedule(attempts=5, max_attempts=5))
    await queue.reschedule_task(task.id, Reschedule(attempts=1))
    with pytest.raises(InvalidTask, match="maxAttempts"):
        await queue.reschedule_task(task.id, Reschedule(max_attempts=1))
    with pytest.raises(InvalidTask):
        Reschedule()
    with pytest.raises(InvalidTask, match="priority"):
        Reschedule(priority=5000)
    assert (await queue.get_task(task.id)).attempts == 1


async def test_remove_by_key_deletes_waiting_dead_and_done_tasks_and_frees_the_key(queue):
    waiting = await enqueue(queue, key="a", queue="q1")
    done = await make_done(queue, "b")
    with pytest.raises(TaskNotFound, match="in queue 'q2'"):
        await queue.remove_task_by_key("a", queue="q2")
    assert (await queue.remove_task_by_key("a", queue="q1")).before.id == waiting.id
    assert (await queue.remove_task_by_key("b")).before.state is TaskState.DONE
    assert await queue.get_task(waiting.id) is None
    assert await queue.get_task(done.id) is None
    fresh = await enqueue(queue, key="b", key_mode=KeyMode.DEDUPE)
    assert fresh.id != done.id


async def test_force_unlock_releases_only_the_named_workers_tasks(queue):
    a = await enqueue(queue)
    b = await enqueue(queue)
    c = await enqueue(queue)
    assert (await claim_one(queue, "w-a")).id == a.id
    assert (await claim_one(queue, "w-b")).id == b.id
    assert (await claim_one(queue, "w-c")).id == c.id

    released = await queue.force_unlock(["w-a", "w-b", "w-none"])

    assert released == {"w-a": [a.id], "w-b": [b.id]}
    for task_id in (a.id, b.id):
        task = await queue.get_task(task_id)
        assert task.state is TaskState.READY
        assert task.lease_owner is None
        assert task.attempts == 0  # the interrupted attempt is not counted
    assert (await queue.get_task(c.id)).state is TaskState.RUNNING
    assert await queue.complete("w-a", [a.id]) == 0  # the old lease is gone
    assert await queue.force_unlock([]) == {}


async def test_dead_preview_counts_by_queue_what_a_replay_would_take(queue):
    for name in ("x", "x", "x", "y"):
        await make_dead(queue, queue_name=name)
    assert await queue.dead_preview(DeadFilter(), limit=None) == {"x": 3, "y": 1}
    assert await queue.dead_preview(DeadFilter(), limit=2) == {"x": 2}
    assert await queue.dead_preview(DeadFilter(queue="y"), limit=10) == {"y": 1}
    assert (
        await queue.dead_preview(DeadFilter(dead_before=now() - timedelta(hours=1)), limit=None)
        == {}
    )
    assert (await queue.dead_stats()).total == 4  # nothing changed


async def test_gc_queues_forgets_only_empty_queues_without_settings(queue):
    task = await enqueue(queue, queue="busy")
    empty = await enqueue(queue, queue="empty")
    await queue.cancel(empty.id)
    gone = await enqueue(queue, queue="paused-empty")
    await queue.cancel(gone.id)
    await queue.set_queue_paused("paused-empty", True)
    await make_dead(queue, queue_name="deadq")

    assert await queue.gc_queues() == ["empty"]

    names = {info.name for info in await queue.list_queues()}
    assert {"busy", "paused-empty", "deadq"} <= names
    assert "empty" not in names
    assert (await queue.get_task(task.id)).state is TaskState.READY
    await enqueue(queue, queue="empty")
    assert (await claim_one(queue, queues=["empty"])).queue == "empty"


async def test_purge_expired_keys_deletes_only_done_tasks_past_retention(queue, open_queue):
    done = await make_done(queue, "kept")
    assert await queue.purge_expired_keys() == 0
    assert (await queue.get_task(done.id)).state is TaskState.DONE
    waiting = await enqueue(queue, key="waiting")
    expiring = await open_queue(key_retention=timedelta(0))
    assert await expiring.purge_expired_keys() == 1
    assert await queue.get_task(done.id) is None
    assert (await queue.get_task(waiting.id)).state is TaskState.READY


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_gc_queues_waits_for_an_enqueue_in_flight_into_an_empty_queue(
    queue, postgres_database_url
):
    """An enqueue whose transaction is still open when the collection starts: its queue
    looks empty (the task is not committed), yet it must keep its row, or the task would
    never be claimed."""
    import asyncpg

    from store.queue.in_transaction import enqueue_in_transaction

    task = await enqueue(queue, queue="in-flight")
    await queue.cancel(task.id)
    connection = await asyncpg.connect(str(postgres_database_url))
    try:
        transaction = connection.transaction()
        await transaction.start()
        [result] = await enqueue_in_transaction(connection, [new_task(queue="in-flight")])
        collecting = asyncio.create_task(queue.gc_queues())
        await asyncio.sleep(0.5)
        assert not collecting.done()  # held off until the enqueue commits
        await transaction.commit()
        assert await asyncio.wait_for(collecting, 10) == []
    finally:
        await connection.close()
    assert "in-flight" in {info.name for info in await queue.list_queues()}
    assert (await claim_one(queue, queues=["in-flight"])).id == result.task.id
