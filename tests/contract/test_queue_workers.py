"""Worker registrations, heartbeats and the sweep of stale workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from store.queue.models import TaskState, WorkerInfo
from tests.contract.helpers import CLOCK_SLACK, LEASE, claim_one, enqueue, now


def info(worker_id, **kwargs):
    kwargs.setdefault("hostname", "host-a")
    kwargs.setdefault("pid", 4242)
    kwargs.setdefault("concurrency", 4)
    return WorkerInfo(worker_id=worker_id, **kwargs)


async def workers_by_id(queue):
    return {w.info.worker_id: w for w in await queue.list_workers()}


async def test_a_registered_worker_is_listed_with_its_running_tasks(queue):
    before = now()
    await queue.register_worker(
        info("w1", queues=("a", "b"), version="1.2.3", hostname="box", pid=7, concurrency=2)
    )
    await queue.register_worker(info("w2"))
    after = now()
    for _ in range(3):
        await enqueue(queue, queue="a")
    await queue.claim("w1", 2, lease=LEASE)

    workers = await workers_by_id(queue)

    assert set(workers) == {"w1", "w2"}
    w1 = workers["w1"]
    assert w1.info == info(
        "w1", queues=("a", "b"), version="1.2.3", hostname="box", pid=7, concurrency=2
    )
    assert w1.running == 2
    assert workers["w2"].running == 0
    assert before - CLOCK_SLACK <= w1.heartbeat_at <= after + CLOCK_SLACK
    assert before - CLOCK_SLACK <= w1.started_at <= after + CLOCK_SLACK


async def test_registering_again_refreshes_the_worker_instead_of_adding_one(queue):
    await queue.register_worker(info("w1", pid=1))
    first = (await workers_by_id(queue))["w1"]
    await asyncio.sleep(0.05)

    await queue.register_worker(info("w1", pid=2))

    workers = await queue.list_workers()
    assert [w.info.worker_id for w in workers] == ["w1"]
    assert workers[0].info.pid == 2
    assert workers[0].heartbeat_at > first.heartbeat_at


async def test_a_heartbeat_refreshes_the_workers_registration(queue):
    await queue.register_worker(info("w1"))
    first = (await workers_by_id(queue))["w1"]
    await asyncio.sleep(0.05)

    await queue.heartbeat("w1", LEASE)

    assert (await workers_by_id(queue))["w1"].heartbeat_at > first.heartbeat_at


async def test_sweeping_removes_a_stale_worker_and_its_tasks_wait_again(queue):
    await queue.register_worker(info("stale"))
    task = await enqueue(queue)
    await claim_one(queue, "stale")
    await asyncio.sleep(1.0)
    await queue.register_worker(info("alive"))

    # "stale" was last heard of a second ago, "alive" just now: 0.5 s parts them safely.
    removed = await queue.sweep_stale_workers(timedelta(seconds=0.5))

    assert removed == ["stale"]
    assert set(await workers_by_id(queue)) == {"alive"}
    waiting = await queue.get_task(task.id)
    assert waiting.state is TaskState.READY
    assert waiting.lease_owner is None
    assert waiting.attempts == 1
    again = await claim_one(queue, "alive")
    assert again.id == task.id
    assert again.attempts == 2


async def test_sweeping_with_zero_age_removes_every_worker_not_heard_from_since(queue):
    await queue.register_worker(info("w1"))
    await queue.register_worker(info("w2"))
    await asyncio.sleep(0.05)

    removed = await queue.sweep_stale_workers(timedelta(0))

    assert sorted(removed) == ["w1", "w2"]
    assert await queue.list_workers() == []
    assert await queue.sweep_stale_workers(timedelta(0)) == []


async def test_sweeping_keeps_workers_with_a_recent_heartbeat(queue):
    await queue.register_worker(info("w1"))
    task = await enqueue(queue)
    await claim_one(queue, "w1")

    assert await queue.sweep_stale_workers(timedelta(minutes=5)) == []
    assert set(await workers_by_id(queue)) == {"w1"}
    assert (await queue.get_task(task.id)).state is TaskState.RUNNING


async def test_deregistering_a_worker_releases_its_leases(queue):
    await queue.register_worker(info("w1"))
    await queue.register_worker(info("w2"))
    task = await enqueue(queue)
    await claim_one(queue, "w1")

    await queue.deregister_worker("w1")

    assert set(await workers_by_id(queue)) == {"w2"}
    released = await queue.get_task(task.id)
    assert released.state is TaskState.READY
    assert released.lease_owner is None
    assert (await claim_one(queue, "w2")).id == task.id


async def test_workers_are_seen_by_every_queue_object(queue, open_queue):
    other = await open_queue()
    await other.register_worker(info("remote"))
    assert set(await workers_by_id(queue)) == {"remote"}
