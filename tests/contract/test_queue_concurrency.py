"""Many workers at once: concurrency limits hold and no task is lost or claimed twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from store.queue.models import TaskState
from tests.contract.helpers import LEASE, all_tasks, claim_one, enqueue, new_task


async def test_a_serial_queue_runs_one_task_at_a_time(queue):
    await queue.set_queue_concurrency("serial", 1)
    first = await enqueue(queue, queue="serial")
    second = await enqueue(queue, queue="serial")

    claimed = await queue.claim("w1", 10, lease=LEASE)

    assert [t.id for t in claimed] == [first.id]
    assert await queue.claim("w2", 10, lease=LEASE) == []
    assert (await queue.get_task(second.id)).state is TaskState.READY
    assert (await queue.get_queue("serial")).concurrency_limit == 1

    await queue.complete("w1", [first.id])
    assert (await claim_one(queue, "w2")).id == second.id


async def test_a_concurrency_limit_leaves_other_queues_alone(queue):
    await queue.set_queue_concurrency("serial", 1)
    await enqueue(queue, queue="serial")
    await enqueue(queue, queue="serial")
    free = [await enqueue(queue, queue="free") for _ in range(3)]

    claimed = []
    while batch := await queue.claim("w1", 10, lease=LEASE):
        claimed.extend(batch)

    assert Counter(t.queue for t in claimed) == {"serial": 1, "free": 3}
    assert {t.id for t in claimed if t.queue == "free"} == {t.id for t in free}


async def test_a_limit_of_two_runs_two_at_a_time_and_removing_it_lifts_the_cap(queue):
    info = await queue.set_queue_concurrency("pair", 2)
    assert info.concurrency_limit == 2
    await queue.enqueue_many([new_task(queue="pair", payload={"i": i}) for i in range(6)])

    assert len(await queue.claim("w1", 10, lease=LEASE)) == 2
    assert await queue.claim("w2", 10, lease=LEASE) == []

    info = await queue.set_queue_concurrency("pair", None)
    assert info.concurrency_limit is None
    assert len(await queue.claim("w2", 10, lease=LEASE)) == 4


@pytest.mark.parametrize("limit", [1, 2])
async def test_a_concurrency_limit_holds_across_concurrent_workers(queue, open_queue, limit):
    await queue.set_queue_concurrency("capped", limit)
    results = await queue.enqueue_many(
        [new_task(queue="capped", payload={"i": i}) for i in range(10)]
    )
    ids = {r.task.id for r in results}
    workers = [queue, *[await open_queue() for _ in range(3)]]
    names = [f"worker-{i}" for i in range(len(workers))]

    held: list[tuple[int, list[int]]] = []  # tasks claimed in the previous round, by worker
    finished: set[int] = set()
    peak = 0
    for _ in range(60):
        batches = await asyncio.gather(
            *(w.claim(n, 3, lease=LEASE) for w, n in zip(workers, names, strict=True))
        )
        now_held = [(i, [t.id for t in batch]) for i, batch in enumerate(batches) if batch]
        running = sum(len(t) for _, t in held) + sum(len(t) for _, t in now_held)
        assert running <= limit, f"{running} tasks of a queue limited to {limit} ran at once"
        assert (await queue.get_queue("capped")).running == running
        peak = max(peak, running)
        # Tasks claimed in the previous round finish now, so leases overlap rounds.
        for i, task_ids in held:
            assert await workers[i].complete(names[i], task_ids) == len(task_ids)
            finished.update(task_ids)
        held = now_held
        if finished | {t for _, ts in held for t in ts} == ids:
            break
    for i, task_ids in held:
        await workers[i].complete(names[i], task_ids)
        finished.update(task_ids)

    assert finished == ids
    assert peak >= 1


async def test_concurrent_claimers_claim_every_task_exactly_once(queue, open_queue):
    total = 500
    results = await queue.enqueue_many([new_task(payload={"i": i}) for i in range(total)])
    ids = {r.task.id for r in results}
    claimers = [queue, *[await open_queue() for _ in range(7)]]

    async def drain(worker, name):
        mine = []
        while batch := await worker.claim(name, 10, lease=LEASE):
            mine.extend(t.id for t in batch)
            assert all(t.lease_owner == name for t in batch)
            assert await worker.complete(name, [t.id for t in batch]) == len(batch)
        return mine

    claimed = await asyncio.gather(*(drain(w, f"c{i}") for i, w in enumerate(claimers)))

    every = [task_id for mine in claimed for task_id in mine]
    duplicates = [task_id for task_id, n in Counter(every).items() if n > 1]
    assert duplicates == []
    assert set(every) == ids
    assert await all_tasks(queue) == []
