"""The dead-letter queue: list, filter, page, replay, delete, purge, stats."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from store.queue.models import DeadFilter, Failure, TaskState
from tests.contract.helpers import (
    CLOCK_SLACK,
    all_dead,
    claim_one,
    enqueue,
    make_dead,
    now,
)


async def make_dead_in_order(queue, count, **kwargs):
    """Dead-letter ``count`` tasks one after the other, with distinct ``dead_at``."""
    dead = []
    for i in range(count):
        dead.append(await make_dead(queue, payload={"i": i}, **kwargs))
        await asyncio.sleep(0.01)
    return dead


async def test_list_dead_shows_newest_first_with_the_error_and_full_payload(queue):
    dead = await make_dead_in_order(queue, 3, error="kaput")
    ready = await enqueue(queue)

    page = await queue.list_dead(DeadFilter(), limit=10, offset=0)

    assert [t.id for t in page.items] == [t.id for t in reversed(dead)]
    assert page.total == 3
    assert ready.id not in [t.id for t in page.items]
    assert all(t.state is TaskState.DEAD and t.last_error == "kaput" for t in page.items)
    assert [t.payload for t in page.items] == [{"i": 2}, {"i": 1}, {"i": 0}]


async def test_list_dead_pages_with_limit_and_offset_and_the_full_total(queue):
    dead = await make_dead_in_order(queue, 5)
    newest_first = [t.id for t in reversed(dead)]

    pages = [await queue.list_dead(DeadFilter(), limit=2, offset=o) for o in (0, 2, 4, 6)]

    assert [[t.id for t in p.items] for p in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]
    assert [p.total for p in pages] == [5, 5, 5, 5]
    assert [(p.limit, p.offset) for p in pages] == [(2, 0), (2, 2), (2, 4), (2, 6)]


async def test_list_dead_filters_by_queue_handler_and_search(queue):
    a = await make_dead(queue, "mail.send", queue_name="mail", payload={"to": "Ops@Example.org"})
    b = await make_dead(queue, "mail.send", queue_name="bulk", error="SMTP Timeout")
    c = await make_dead(queue, "report.build", queue_name="bulk", payload={"name": "weekly"})

    def ids(items):
        return sorted(t.id for t in items)

    assert ids(await all_dead(queue, queue="bulk")) == sorted([b.id, c.id])
    assert ids(await all_dead(queue, handler="mail.send")) == sorted([a.id, b.id])
    assert ids(await all_dead(queue, queue="bulk", handler="mail.send")) == [b.id]
    # search: case-insensitive substring of handler, key, last error or payload text
    assert ids(await all_dead(queue, search="ops@example")) == [a.id]
    assert ids(await all_dead(queue, search="smtp timeout")) == [b.id]
    assert ids(await all_dead(queue, search="REPORT")) == [c.id]
    assert ids(await all_dead(queue, search="WEEKLY")) == [c.id]
    assert await all_dead(queue, search="no such text") == []
    page = await queue.list_dead(DeadFilter(queue="bulk"), limit=1, offset=0)
    assert page.total == 2
    assert len(page.items) == 1


async def test_list_dead_filters_by_when_tasks_died(queue):
    early = await make_dead(queue)
    await asyncio.sleep(0.05)
    cutoff = now()
    await asyncio.sleep(0.05)
    late = await make_dead(queue)

    assert [t.id for t in await all_dead(queue, dead_before=cutoff)] == [early.id]
    assert [t.id for t in await all_dead(queue, dead_after=cutoff)] == [late.id]


async def test_replaying_a_dead_task_makes_it_ready_with_attempts_reset_and_records_who(queue):
    dead = await make_dead(queue, payload={"keep": "me"}, error="first failure")
    assert dead.attempts == 1

    before = now()
    assert await queue.replay_dead([dead.id], actor="alice") == [dead.id]
    after = now()

    replayed = await queue.get_task(dead.id)
    assert replayed.state is TaskState.READY
    assert replayed.attempts == 0
    assert replayed.replayed_by == "alice"
    assert before - CLOCK_SLACK <= replayed.replayed_at <= after + CLOCK_SLACK
    assert replayed.replay_count == 1
    assert replayed.payload == {"keep": "me"}
    assert await all_dead(queue) == []
    claimed = await claim_one(queue, "w2")
    assert claimed.id == dead.id
    assert claimed.attempts == 1


async def test_replaying_again_counts_replays_and_records_the_latest_actor(queue):
    dead = await make_dead(queue)
    await queue.replay_dead([dead.id], actor="alice")
    await claim_one(queue, "w1")
    await queue.fail("w1", [Failure(task_id=dead.id, error="again", retry_at=None)])

    assert await queue.replay_dead([dead.id], actor="bob") == [dead.id]

    task = await queue.get_task(dead.id)
    assert task.replay_count == 2
    assert task.replayed_by == "bob"
    assert task.attempts == 0


async def test_replay_ignores_ids_that_are_not_dead(queue):
    dead = await make_dead(queue)
    ready = await enqueue(queue)

    assert await queue.replay_dead([ready.id, 987654321], actor="alice") == []
    assert await queue.replay_dead([dead.id, ready.id], actor="alice") == [dead.id]
    assert (await queue.get_task(ready.id)).replay_count == 0


async def test_replay_dead_matching_replays_up_to_the_limit_oldest_first(queue):
    in_x = [await make_dead(queue, queue_name="x", payload={"i": i}) for i in range(5)]
    in_y = [await make_dead(queue, queue_name="y") for _ in range(2)]

    replayed = await queue.replay_dead_matching(DeadFilter(queue="x"), limit=3, actor="carol")

    assert sorted(replayed) == sorted(t.id for t in in_x[:3])
    for task in in_x[:3]:
        stored = await queue.get_task(task.id)
        assert stored.state is TaskState.READY
        assert stored.replayed_by == "carol"
    assert sorted(t.id for t in await all_dead(queue, queue="x")) == sorted(t.id for t in in_x[3:])
    assert sorted(t.id for t in await all_dead(queue, queue="y")) == sorted(t.id for t in in_y)


async def test_delete_dead_deletes_only_dead_tasks(queue):
    dead = [await make_dead(queue) for _ in range(3)]
    ready = await enqueue(queue)

    assert await queue.delete_dead([dead[0].id, dead[1].id, ready.id, 987654321]) == 2

    assert await queue.get_task(dead[0].id) is None
    assert await queue.get_task(dead[1].id) is None
    assert (await queue.get_task(dead[2].id)).state is TaskState.DEAD
    assert (await queue.get_task(ready.id)).state is TaskState.READY


async def test_purge_dead_deletes_tasks_dead_before_the_cutoff(queue):
    old = [await make_dead(queue) for _ in range(2)]
    await asyncio.sleep(0.05)
    cutoff = now()
    await asyncio.sleep(0.05)
    recent = await make_dead(queue)
    ready = await enqueue(queue)

    assert await queue.purge_dead(cutoff) == 2

    assert [await queue.get_task(t.id) for t in old] == [None, None]
    assert [t.id for t in await all_dead(queue)] == [recent.id]
    assert (await queue.get_task(ready.id)).state is TaskState.READY
    assert await queue.purge_dead(now() - timedelta(days=1)) == 0


async def test_dead_stats_count_dead_tasks_by_queue_and_handler(queue):
    empty = await queue.dead_stats()
    assert empty.total == 0
    assert empty.by_queue == {}
    assert empty.by_handler == {}
    assert empty.oldest_dead_at is None
    assert empty.newest_dead_at is None

    first = await make_dead(queue, "a.h", queue_name="q1")
    await asyncio.sleep(0.01)
    await make_dead(queue, "a.h", queue_name="q2")
    await asyncio.sleep(0.01)
    last = await make_dead(queue, "b.h", queue_name="q2")
    await enqueue(queue, "c.h", queue="q3")

    stats = await queue.dead_stats()
    assert stats.total == 3
    assert stats.by_queue == {"q1": 1, "q2": 2}
    assert stats.by_handler == {"a.h": 2, "b.h": 1}
    assert abs(stats.oldest_dead_at - first.dead_at) <= timedelta(milliseconds=5)
    assert abs(stats.newest_dead_at - last.dead_at) <= timedelta(milliseconds=5)
