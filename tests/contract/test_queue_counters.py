"""Queue listings and their counters."""

from __future__ import annotations

from datetime import timedelta

from store.queue.models import Failure
from tests.contract.helpers import LEASE, enqueue, new_task, now


async def test_queue_counters_follow_a_mixed_sequence(queue):
    later = now() + timedelta(hours=1)
    await queue.enqueue_many([new_task(queue="c", payload={"i": i}) for i in range(6)])
    await queue.enqueue_many([new_task(queue="c", run_at=later) for _ in range(2)])
    await enqueue(queue, queue="d")

    claimed = await queue.claim("w1", 3, lease=LEASE, queues=["c"])
    assert len(claimed) == 3
    done, retried, dead = (t.id for t in claimed)
    assert await queue.complete("w1", [done]) == 1
    assert (
        await queue.fail(
            "w1",
            [
                Failure(task_id=retried, error="later", retry_at=later),
                Failure(task_id=dead, error="never", retry_at=None),
            ],
        )
        == 2
    )
    assert len(await queue.claim("w2", 1, lease=LEASE, queues=["c"])) == 1

    c = await queue.get_queue("c")
    assert (c.ready, c.scheduled, c.running, c.dead) == (2, 3, 1, 1)
    assert (c.completed, c.failed) == (1, 2)
    d = await queue.get_queue("d")
    assert (d.ready, d.scheduled, d.running, d.dead, d.completed, d.failed) == (1, 0, 0, 0, 0, 0)

    listed = {q.name: q for q in await queue.list_queues()}
    assert listed["c"] == c
    assert listed["d"] == d


async def test_list_queues_is_sorted_by_name_and_unknown_queues_are_none(queue):
    for name in ("zeta", "alpha", "mid"):
        await enqueue(queue, queue=name)
    await queue.set_queue_paused("beta", True)

    assert [q.name for q in await queue.list_queues()] == ["alpha", "beta", "mid", "zeta"]
    assert await queue.get_queue("never-seen") is None


async def test_completed_and_failed_counters_are_cumulative(queue):
    for round_ in range(3):
        task = await enqueue(queue, queue="cum", payload={"r": round_})
        [claimed] = await queue.claim("w1", 1, lease=LEASE)
        assert claimed.id == task.id
        await queue.fail("w1", [Failure(task_id=task.id, error="e", retry_at=now())])
        [again] = await queue.claim("w1", 1, lease=LEASE)
        await queue.complete("w1", [again.id])

    info = await queue.get_queue("cum")
    assert (info.completed, info.failed) == (3, 3)
    assert (info.ready, info.scheduled, info.running, info.dead) == (0, 0, 0, 0)
