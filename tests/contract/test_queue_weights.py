"""Queue weights: under contention a queue of weight 3 gets about three times the claims
of a queue of weight 1; overrides, defaults and resets."""

from __future__ import annotations

import pytest

from store.errors import InvalidTask
from tests.contract.helpers import LEASE, new_task


async def test_a_queue_of_weight_three_gets_about_three_times_the_claims(queue):
    # 800 single claims over two queues that never run dry: B's share is binomial
    # (n=800, p=1/4), so the asserted ratio band is more than 3 standard deviations wide
    # on each side.
    claims = 800
    await queue.set_queue_weight("A", 3)
    await queue.set_queue_weight("B", 1)
    for name in ("A", "B"):
        await queue.enqueue_many([new_task(queue=name, payload={"i": i}) for i in range(claims)])

    counts = {"A": 0, "B": 0}
    for _ in range(claims):
        [task] = await queue.claim("w1", 1, lease=LEASE)
        counts[task.queue] += 1

    assert counts["B"] > 0
    ratio = counts["A"] / counts["B"]
    assert 2.2 <= ratio <= 4.0, counts


async def test_weights_do_not_override_priority_within_a_queue(queue):
    await queue.set_queue_weight("only", 5)
    low = (await queue.enqueue(new_task(queue="only", priority=10))).task
    high = (await queue.enqueue(new_task(queue="only", priority=-10))).task

    [first] = await queue.claim("w1", 1, lease=LEASE)
    [second] = await queue.claim("w1", 1, lease=LEASE)

    assert [first.id, second.id] == [high.id, low.id]


async def test_setting_the_weight_of_a_new_queue_creates_it(queue):
    assert await queue.get_queue("fresh") is None

    info = await queue.set_queue_weight("fresh", 7)

    assert info.name == "fresh"
    assert info.weight == 7
    assert info.weight_overridden is True
    assert info.ready == 0
    stored = await queue.get_queue("fresh")
    assert stored.weight == 7
    assert stored.weight_overridden is True
    assert "fresh" in [q.name for q in await queue.list_queues()]


async def test_a_queue_has_weight_one_unless_configured(queue):
    await queue.enqueue(new_task(queue="plain"))
    info = await queue.get_queue("plain")
    assert info.weight == 1
    assert info.weight_overridden is False
    assert info.paused is False
    assert info.concurrency_limit is None


async def test_resetting_a_weight_returns_to_the_configured_default(queue):
    await queue.set_default_weights({"a": 5})
    assert (await queue.set_queue_weight("a", 9)).weight == 9

    info = await queue.reset_queue_weight("a")

    assert info.weight == 5
    assert info.weight_overridden is False
    assert (await queue.get_queue("a")).weight == 5


async def test_resetting_the_weight_of_an_unknown_queue_creates_it_with_its_default(queue):
    info = await queue.reset_queue_weight("unknown")
    assert info.name == "unknown"
    assert info.weight == 1
    assert info.weight_overridden is False
    assert await queue.get_queue("unknown") is not None


async def test_default_weights_leave_overrides_untouched(queue):
    await queue.set_queue_weight("a", 9)
    await queue.enqueue(new_task(queue="c"))

    await queue.set_default_weights({"a": 4, "b": 2})

    a = await queue.get_queue("a")
    assert (a.weight, a.weight_overridden) == (9, True)
    b = await queue.get_queue("b")
    assert b is not None, "set_default_weights creates the queues it names"
    assert (b.weight, b.weight_overridden) == (2, False)
    c = await queue.get_queue("c")
    assert (c.weight, c.weight_overridden) == (1, False)
    assert (await queue.reset_queue_weight("a")).weight == 4


async def test_weights_are_seen_by_every_worker(queue, open_queue):
    await queue.set_queue_weight("shared", 12)
    other = await open_queue()
    assert (await other.get_queue("shared")).weight == 12


@pytest.mark.parametrize("weight", [0, -1, 1001])
async def test_a_weight_outside_1_to_1000_is_refused(queue, weight):
    with pytest.raises(InvalidTask):
        await queue.set_queue_weight("q", weight)
    info = await queue.get_queue("q")
    assert info is None or info.weight == 1


@pytest.mark.parametrize("weight", [1, 1000])
async def test_the_weight_bounds_are_accepted(queue, weight):
    assert (await queue.set_queue_weight("q", weight)).weight == weight
