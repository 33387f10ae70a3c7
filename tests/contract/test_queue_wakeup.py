"""``wait_for_work``: idle workers wake up when work arrives.

Only "woke before the timeout" is asserted; how fast is for the benchmarks.
"""

from __future__ import annotations

import asyncio
import time

from tests.conftest import only_postgres
from tests.contract.helpers import make_dead, new_task

TIMEOUT = 5.0


async def wake_after(waiter, action):
    """Start ``waiter.wait_for_work``, run ``action`` once it waits; return the seconds the
    waiter took to return."""
    # Spurious wake-ups are allowed (e.g. left over from the test's own set-up), so wait
    # again until a waiter really blocks; one that never blocks is a busy loop.
    for _ in range(5):
        started = time.monotonic()
        waiting = asyncio.create_task(waiter.wait_for_work(TIMEOUT))
        await asyncio.sleep(0.2)  # let the waiter start listening
        if not waiting.done():
            break
        await waiting
    else:
        raise AssertionError("wait_for_work keeps returning at once with nothing to do")
    await action()
    await asyncio.wait_for(waiting, TIMEOUT + 5)
    return time.monotonic() - started


async def test_wait_for_work_returns_after_the_timeout_when_nothing_happens(queue):
    started = time.monotonic()
    await asyncio.wait_for(queue.wait_for_work(0.2), 5)
    assert time.monotonic() - started < 5


async def test_an_enqueue_wakes_a_waiting_worker_on_the_same_queue_object(queue):
    elapsed = await wake_after(queue, lambda: queue.enqueue(new_task()))
    assert elapsed < TIMEOUT - 1


async def test_a_batch_enqueue_wakes_a_waiting_worker(queue):
    elapsed = await wake_after(queue, lambda: queue.enqueue_many([new_task(), new_task()]))
    assert elapsed < TIMEOUT - 1


async def test_a_replay_wakes_a_waiting_worker(queue):
    dead = await make_dead(queue)
    elapsed = await wake_after(queue, lambda: queue.replay_dead([dead.id], actor="ops"))
    assert elapsed < TIMEOUT - 1


async def test_a_resume_wakes_a_waiting_worker(queue):
    await queue.enqueue(new_task())
    await queue.set_global_paused(True)
    elapsed = await wake_after(queue, lambda: queue.set_global_paused(False))
    assert elapsed < TIMEOUT - 1


@only_postgres
async def test_an_enqueue_by_another_process_wakes_a_waiting_worker(queue, open_queue):
    producer = await open_queue()
    elapsed = await wake_after(queue, lambda: producer.enqueue(new_task()))
    assert elapsed < TIMEOUT - 1
