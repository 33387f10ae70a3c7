"""The library client: enqueue (one, many, the backfill helpers, inside the caller's
transaction), inspect, cancel, and manage the dead-letter queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import BaseModel

import longshore
from store.queue.retry import PRESETS
from tests.conftest import only_postgres
from tests.integration.library_harness import QUICK, eventually, library_url


class Invoice(BaseModel):
    number: int
    total_cents: int


@pytest.fixture
async def client(backend, queue_location):
    async with longshore.Client(library_url(backend, queue_location)) as opened:
        yield opened


async def test_enqueue_stores_the_payload_and_every_option(client):
    run_at = datetime.now(UTC) + timedelta(hours=1)
    result = await client.enqueue(
        "invoice.send",
        Invoice(number=7, total_cents=1250),
        queue="billing",
        priority="bulk_low",
        run_at=run_at,
        key="invoice-7",
        key_mode="dedupe",
        max_attempts=2,
        retry="conservative",
    )
    task = await client.get(result.task.id)
    assert task is not None
    assert task.payload == {"number": 7, "total_cents": 1250}
    assert (task.queue, task.priority, task.key) == ("billing", 20, "invoice-7")
    assert task.state is longshore.TaskState.SCHEDULED
    assert abs(task.run_at - run_at) < timedelta(milliseconds=5)
    assert task.retry.max_attempts == 2
    assert task.retry.base_delay == PRESETS["conservative"].base_delay

    again = await client.enqueue("invoice.send", {"number": 8}, key="invoice-7", key_mode="dedupe")
    assert again.outcome is longshore.EnqueueOutcome.DEDUPLICATED


async def test_the_backfill_helpers_pick_queue_priority_and_retry_preset(client):
    fast = (await client.enqueue_fast("ping", {})).task
    bulk = (await client.enqueue_bulk("reindex", {}, key="reindex")).task
    critical = (await client.enqueue_critical("charge", {"id": 1})).task
    overridden = (await client.enqueue_fast("ping", {}, queue="pings", max_attempts=9)).task

    assert (fast.queue, fast.priority, fast.retry) == ("fast", 0, PRESETS["fast"])
    assert (bulk.queue, bulk.priority, bulk.retry) == ("bulk", 10, PRESETS["conservative"])
    assert (critical.queue, critical.priority) == ("fast", -10)
    assert critical.retry == PRESETS["aggressive"]
    assert critical.retry.max_attempts == 12
    assert (overridden.queue, overridden.retry.max_attempts) == ("pings", 9)
    assert bulk.key == "reindex"


async def test_enqueue_many_is_all_or_nothing(client):
    good = longshore.new_task("a", {"n": 1})
    with pytest.raises(longshore.InvalidTask, match="payload must encode to a JSON object"):
        longshore.new_task("a", [1, 2])
    results = await client.enqueue_many([good, longshore.new_task("b", run_at=timedelta(days=1))])
    assert [r.task.handler for r in results] == ["a", "b"]
    assert (await client.list_tasks("ready")).total == 1
    assert (await client.list_tasks("scheduled")).total == 1


async def test_cancel_get_and_list_by_state(client):
    waiting = (await client.enqueue("a", {})).task
    other = (await client.enqueue("b", {}, queue="q2")).task

    cancelled = await client.cancel(waiting.id)
    assert cancelled.id == waiting.id
    assert await client.get(waiting.id) is None
    with pytest.raises(longshore.TaskNotFound):
        await client.cancel(waiting.id)
    listed = await client.list_tasks("ready", queue="q2")
    assert [t.id for t in listed.items] == [other.id]
    assert (await client.list_tasks(handler="a")).total == 0


async def test_the_dead_letter_queue_can_be_listed_replayed_and_deleted(client):
    registry = longshore.Registry()
    attempts: list[int] = []

    @registry.handler("fragile")
    async def fragile(payload: dict, ctx: longshore.Context) -> None:
        attempts.append(ctx.attempt)
        if payload.get("fail"):
            raise longshore.PermanentFailure("bad input")

    first = (await client.enqueue(fragile, {"fail": True})).task
    second = (await client.enqueue(fragile, {"fail": True, "n": 2})).task
    worker = longshore.Worker(client, registry, **QUICK)
    await worker.run_until_idle()

    dead = await client.list_dead(handler="fragile")
    assert {t.id for t in dead.items} == {first.id, second.id}
    stats = await client.dead_stats()
    assert stats.by_handler == {"fragile": 2}

    assert await client.replay_dead([first.id], actor="ops") == [first.id]
    replayed = await client.get(first.id)
    assert replayed is not None
    assert (replayed.state, replayed.replayed_by) == (longshore.TaskState.READY, "ops")
    assert await client.delete_dead([second.id]) == 1
    assert await client.get(second.id) is None
    await worker.run_until_idle()
    assert (await client.list_dead()).total == 1
    assert attempts == [1, 1, 1]


@pytest.mark.parametrize("backend", [pytest.param("sqlite", id="sqlite")], indirect=True)
async def test_enqueueing_on_your_own_connection_needs_postgresql(client):
    with pytest.raises(longshore.LibraryError, match="needs PostgreSQL"):
        await client.enqueue("a", {}, connection=object())


@only_postgres
async def test_a_rolled_back_transaction_leaves_no_task(backend, queue_location, client):
    connection = await asyncpg.connect(queue_location)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await client.enqueue("welcome", {"user": 1}, connection=connection)
        await transaction.rollback()
    finally:
        await connection.close()
    assert (await client.list_tasks()).total == 0


@only_postgres
async def test_a_committed_transaction_enqueues_and_its_task_runs(backend, queue_location, client):
    registry = longshore.Registry()
    ran: list[int] = []

    @registry.handler("welcome")
    async def welcome(payload: dict) -> None:
        ran.append(payload["user"])

    connection = await asyncpg.connect(queue_location)
    try:
        await connection.execute("CREATE TABLE users (id int PRIMARY KEY)")
        async with longshore.Worker(client, registry, **QUICK).running():
            async with connection.transaction():
                await connection.execute("INSERT INTO users VALUES (1)")
                await client.enqueue(welcome, {"user": 1}, connection=connection)
            await eventually(lambda: _true(ran == [1]))
    finally:
        await connection.close()


async def _true(value: bool) -> bool:
    return value
