"""Dead tasks by key: a dead task keeps a key a newer task took over as released, so that
``delete_dead_by_key`` still finds it (what the library's DLQ cleanup relies on)."""

from __future__ import annotations

from store.queue.models import Failure, KeyMode, NewTask, TaskState
from tests.contract.helpers import LEASE, all_dead, claim_one, enqueue


async def _dead_with_key(queue, key: str, handler: str = "test.handler"):
    task = await enqueue(queue, handler, key=key)
    claimed = await claim_one(queue)
    assert claimed.id == task.id
    await queue.fail("w1", [Failure(task_id=task.id, error="boom", retry_at=None)])
    return task


async def test_delete_dead_by_key_deletes_the_dead_task_holding_the_key(queue):
    dead = await _dead_with_key(queue, "order-1")
    other = await _dead_with_key(queue, "order-2")

    assert await queue.delete_dead_by_key("order-1") == 1
    assert [t.id for t in await all_dead(queue)] == [other.id]
    assert await queue.get_task(dead.id) is None


async def test_a_dead_task_whose_key_was_taken_over_is_still_found_by_it(queue):
    dead = await _dead_with_key(queue, "order-1")
    newer = (await queue.enqueue(NewTask(handler="test.handler", key="order-1"))).task
    assert newer.id != dead.id
    stored = await queue.get_task(dead.id)
    assert stored is not None
    assert (stored.state, stored.key) == (TaskState.DEAD, None)

    assert await queue.delete_dead_by_key("order-1") == 1
    assert await queue.get_task(dead.id) is None
    assert await queue.get_task(newer.id) is not None, "the newer task is not dead: kept"


async def test_delete_dead_by_key_leaves_tasks_that_are_not_dead(queue):
    waiting = await enqueue(queue, key="k-wait")
    await enqueue(queue, key="k-run")
    running = await queue.claim("w2", 10, lease=LEASE)
    # A running task that loses its key to a newer one is not dead: nothing to find.
    await queue.enqueue(NewTask(handler="test.handler", key="k-run", key_mode=KeyMode.REPLACE))

    assert await queue.delete_dead_by_key("k-wait") == 0
    assert await queue.delete_dead_by_key("k-run") == 0
    assert await queue.get_task(waiting.id) is not None
    for task in running:
        assert await queue.get_task(task.id) is not None
