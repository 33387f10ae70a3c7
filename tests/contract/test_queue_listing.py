"""Listing and looking up tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from store.queue.models import Failure, TaskFilter, TaskState
from tests.contract.helpers import all_tasks, claim_one, enqueue, make_done, now


@pytest.fixture
async def one_of_each_state(queue):
    """One task in every state, by state."""
    done = await make_done(queue, "done-key", queue="q-done")
    dead = await enqueue(queue, "h.dead", queue="q-dead")
    await claim_one(queue, "w1", queues=["q-dead"])
    await queue.fail("w1", [Failure(task_id=dead.id, error="x", retry_at=None)])
    running = await enqueue(queue, "h.running", queue="q-running")
    await claim_one(queue, "w1", queues=["q-running"])
    ready = await enqueue(queue, "h.ready", queue="q-ready")
    scheduled = await enqueue(queue, "h.scheduled", run_at=now() + timedelta(hours=1))
    return {
        TaskState.READY: ready.id,
        TaskState.SCHEDULED: scheduled.id,
        TaskState.RUNNING: running.id,
        TaskState.DEAD: dead.id,
        TaskState.DONE: done.id,
    }


@pytest.mark.parametrize("state", list(TaskState), ids=[s.value for s in TaskState])
async def test_list_tasks_filters_by_each_state(queue, one_of_each_state, state):
    page = await queue.list_tasks(TaskFilter(state=state), limit=100, offset=0)

    assert [t.id for t in page.items] == [one_of_each_state[state]]
    assert page.items[0].state is state
    assert page.total == 1


async def test_list_tasks_without_a_state_lists_every_task_by_id(queue, one_of_each_state):
    page = await queue.list_tasks(TaskFilter(), limit=100, offset=0)

    assert [t.id for t in page.items] == sorted(one_of_each_state.values())
    assert page.total == 5
    states = {t.id: t.state for t in page.items}
    assert states == {task_id: state for state, task_id in one_of_each_state.items()}


async def test_get_task_reports_the_state_of_each_task(queue, one_of_each_state):
    for state, task_id in one_of_each_state.items():
        assert (await queue.get_task(task_id)).state is state


async def test_get_task_of_an_unknown_id_is_none(queue):
    assert await queue.get_task(987654321) is None


async def test_list_tasks_filters_by_queue_handler_and_search(queue):
    a = await enqueue(queue, "mail.send", queue="mail", payload={"to": "Ops@Example.org"})
    b = await enqueue(queue, "mail.send", queue="bulk", key="Invoice-42")
    c = await enqueue(queue, "report.build", queue="bulk", payload={"name": "weekly"})
    d = await enqueue(queue, "report.build", queue="other")
    await claim_one(queue, "w1", queues=["other"])
    await queue.fail("w1", [Failure(task_id=d.id, error="Disk Full", retry_at=now())])

    async def ids(**kwargs):
        return [t.id for t in await all_tasks(queue, **kwargs)]

    assert await ids(queue="bulk") == [b.id, c.id]
    assert await ids(handler="mail.send") == [a.id, b.id]
    assert await ids(queue="bulk", handler="report.build") == [c.id]
    assert await ids(search="MAIL.SEND") == [a.id, b.id]  # handler
    assert await ids(search="invoice-4") == [b.id]  # key
    assert await ids(search="disk full") == [d.id]  # last error
    assert await ids(search="ops@example") == [a.id]  # payload text
    assert await ids(search="nothing matches this") == []
    assert await ids(state=TaskState.READY, queue="bulk", search="weekly") == [c.id]


async def test_list_tasks_pages_by_id_with_the_full_total(queue):
    ids = [(await enqueue(queue, payload={"i": i})).id for i in range(7)]

    pages = [await queue.list_tasks(TaskFilter(), limit=3, offset=o) for o in (0, 3, 6, 9)]

    assert [[t.id for t in p.items] for p in pages] == [ids[0:3], ids[3:6], ids[6:7], []]
    assert [p.total for p in pages] == [7, 7, 7, 7]
    assert [(p.limit, p.offset) for p in pages] == [(3, 0), (3, 3), (3, 6), (3, 9)]


async def test_list_tasks_total_counts_only_matching_tasks(queue):
    for i in range(4):
        await enqueue(queue, queue="x", payload={"i": i})
    await enqueue(queue, queue="y")

    page = await queue.list_tasks(TaskFilter(queue="x"), limit=2, offset=0)

    assert page.total == 4
    assert len(page.items) == 2
    assert {t.queue for t in page.items} == {"x"}
    assert (
        await queue.list_tasks(TaskFilter(queue="x", state=TaskState.RUNNING), limit=2, offset=0)
    ).total == 0


async def test_list_tasks_counts_at_most_count_max(queue):
    ids = [(await enqueue(queue, queue="x", payload={"i": i})).id for i in range(7)]
    await enqueue(queue, queue="y")

    capped = await queue.list_tasks(TaskFilter(queue="x"), limit=2, offset=2, count_max=5)
    exact = await queue.list_tasks(TaskFilter(queue="x"), limit=2, offset=2, count_max=50)
    none = await queue.list_tasks(TaskFilter(queue="z"), limit=2, offset=0, count_max=5)

    assert [t.id for t in capped.items] == ids[2:4]
    assert (capped.total, exact.total, none.total) == (5, 7, 0)
    ready = TaskFilter(queue="x", state=TaskState.READY)
    assert (await queue.list_tasks(ready, limit=1, offset=0, count_max=3)).total == 3


async def test_list_tasks_of_dead_tasks_filters_and_pages_by_id(queue):
    await enqueue(queue, "h.ready", queue="z")
    dead = []
    for index, (name, handler) in enumerate(
        [("x", "h.a"), ("y", "h.a"), ("x", "h.b"), ("x", "h.a")]
    ):
        task = await enqueue(queue, handler, queue=name, payload={"n": f"needle-{index}"})
        await claim_one(queue, "w1", queues=[name])
        await queue.fail("w1", [Failure(task_id=task.id, error="x", retry_at=None)])
        dead.append(task.id)

    def ids(page):
        return [t.id for t in page.items]

    by_state = TaskFilter(state=TaskState.DEAD)
    assert ids(await queue.list_tasks(by_state, limit=10, offset=0)) == dead
    assert ids(await queue.list_tasks(by_state, limit=2, offset=1)) == dead[1:3]
    in_x = TaskFilter(state=TaskState.DEAD, queue="x", handler="h.a")
    page = await queue.list_tasks(in_x, limit=10, offset=0, count_max=100)
    assert (ids(page), page.total) == ([dead[0], dead[3]], 2)
    found = TaskFilter(state=TaskState.DEAD, search="NEEDLE-2")
    assert ids(await queue.list_tasks(found, limit=10, offset=0)) == [dead[2]]
