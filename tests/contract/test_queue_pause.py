"""Pausing queues and global dequeue."""

from __future__ import annotations

from store.queue.models import TaskState
from tests.contract.helpers import LEASE, enqueue


async def claim_all(queue, worker="w1", **kwargs):
    """Claim until nothing is claimable; return the ids claimed."""
    claimed = []
    while batch := await queue.claim(worker, 50, lease=LEASE, **kwargs):
        claimed.extend(t.id for t in batch)
    return claimed


async def test_a_paused_queue_is_never_claimed_while_other_queues_still_are(queue):
    info = await queue.set_queue_paused("held", True)
    assert info.name == "held"
    assert info.paused is True
    held = [await enqueue(queue, queue="held", priority=-100) for _ in range(3)]
    free = [await enqueue(queue, queue="free") for _ in range(2)]

    assert sorted(await claim_all(queue)) == sorted(t.id for t in free)
    assert await queue.claim("w1", 10, lease=LEASE, queues=["held"]) == []
    for task in held:
        assert (await queue.get_task(task.id)).state is TaskState.READY
    assert (await queue.get_queue("held")).paused is True


async def test_resuming_a_queue_makes_its_tasks_claimable_again(queue):
    task = await enqueue(queue, queue="held")
    await queue.set_queue_paused("held", True)
    assert await claim_all(queue) == []

    info = await queue.set_queue_paused("held", False)

    assert info.paused is False
    assert await claim_all(queue) == [task.id]


async def test_global_pause_blocks_every_queue_until_resumed(queue):
    ids = [(await enqueue(queue, queue=name)).id for name in ("a", "b", "c")]
    assert await queue.is_global_paused() is False

    await queue.set_global_paused(True)

    assert await queue.is_global_paused() is True
    assert await claim_all(queue) == []
    assert await queue.claim("w1", 10, lease=LEASE, queues=["a"]) == []

    await queue.set_global_paused(False)

    assert await queue.is_global_paused() is False
    assert sorted(await claim_all(queue)) == sorted(ids)


async def test_global_resume_does_not_resume_a_paused_queue(queue):
    held = await enqueue(queue, queue="held")
    free = await enqueue(queue, queue="free")
    await queue.set_queue_paused("held", True)
    await queue.set_global_paused(True)
    await queue.set_global_paused(False)

    assert await claim_all(queue) == [free.id]
    assert (await queue.get_task(held.id)).state is TaskState.READY


async def test_pauses_are_persisted_and_seen_by_every_worker(queue, open_queue):
    held = await enqueue(queue, queue="held")
    await queue.set_queue_paused("held", True)
    other = await open_queue()

    assert (await other.get_queue("held")).paused is True
    assert await claim_all(other, "w2") == []

    await other.set_global_paused(True)
    free = await enqueue(queue, queue="free")
    assert await queue.is_global_paused() is True
    assert await claim_all(queue) == []

    await queue.set_global_paused(False)
    await queue.set_queue_paused("held", False)
    assert sorted(await claim_all(other, "w2")) == sorted([held.id, free.id])


async def test_pauses_survive_reopening_the_database(queue, queue_factory):
    await queue.set_queue_paused("held", True)
    await queue.set_global_paused(True)
    await queue_factory.close(queue)

    reopened = await queue_factory.open()

    assert await reopened.is_global_paused() is True
    assert (await reopened.get_queue("held")).paused is True


async def test_pausing_an_unknown_queue_creates_it_paused(queue):
    assert await queue.get_queue("later") is None
    await queue.set_queue_paused("later", True)

    assert (await queue.get_queue("later")).paused is True
    task = await enqueue(queue, queue="later")
    assert await claim_all(queue) == []
    assert (await queue.get_task(task.id)).state is TaskState.READY
