"""Enqueue inside the caller's own PostgreSQL transaction (store.queue.in_transaction):
the tasks commit or roll back with the caller's rows, and the commit wakes workers."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from store.errors import StoreError
from store.queue.in_transaction import enqueue_in_transaction
from store.queue.models import EnqueueOutcome, KeyMode, NewTask, TaskFilter, TaskState
from store.queue.retry import RetryPolicy
from tests.conftest import only_postgres
from tests.contract.helpers import LEASE, all_tasks

pytestmark = only_postgres


@pytest.fixture
async def connection(queue_location):
    conn = await asyncpg.connect(queue_location)
    await conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
    try:
        yield conn
    finally:
        await conn.close()


async def test_a_rolled_back_transaction_leaves_neither_its_rows_nor_its_tasks(queue, connection):
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("INSERT INTO orders (item) VALUES ('book')")
    results = await enqueue_in_transaction(
        connection, [NewTask(handler="mail.send", payload={"order": 1}, key="order-1")]
    )
    assert results[0].outcome is EnqueueOutcome.CREATED
    await transaction.rollback()

    assert await connection.fetchval("SELECT count(*) FROM orders") == 0
    assert await all_tasks(queue) == []
    assert await queue.claim("w1", 10, lease=LEASE) == []


async def test_a_committed_transaction_makes_its_tasks_claimable_at_the_commit(queue, connection):
    policy = RetryPolicy.preset("fast")
    async with connection.transaction():
        await connection.execute("INSERT INTO orders (item) VALUES ('book')")
        results = await enqueue_in_transaction(
            connection,
            [
                NewTask(handler="mail.send", payload={"order": 1, "to": "a@x"}, retry=policy),
                NewTask(handler="mail.send", payload={"order": 2}, queue="other", priority=-10),
            ],
        )
        # Not committed yet: no worker can see them.
        assert await queue.claim("w1", 10, lease=LEASE) == []

    first, second = (result.task for result in results)
    assert first.payload == {"order": 1, "to": "a@x"}
    assert first.retry == policy
    assert first.state is TaskState.READY
    assert (second.queue, second.priority) == ("other", -10)
    claimed = await queue.claim("w1", 10, lease=LEASE)
    assert sorted(task.id for task in claimed) == [first.id, second.id]


async def test_the_commit_wakes_a_waiting_worker(queue, connection):
    await queue.wait_for_work(0.05)  # the LISTEN connection is up
    waiting = asyncio.create_task(queue.wait_for_work(10.0))
    await asyncio.sleep(0.1)
    async with connection.transaction():
        await enqueue_in_transaction(connection, [NewTask(handler="mail.send")])
        await asyncio.sleep(0.2)
        assert not waiting.done(), "woken before the commit"
    await asyncio.wait_for(waiting, 5.0)


async def test_keys_apply_as_in_the_pool_enqueue(queue, connection):
    existing = (await queue.enqueue(NewTask(handler="mail.send", key="k"))).task
    async with connection.transaction():
        results = await enqueue_in_transaction(
            connection, [NewTask(handler="mail.send", key="k", key_mode=KeyMode.DEDUPE)]
        )
    assert results[0].outcome is EnqueueOutcome.DEDUPLICATED
    assert results[0].task.id == existing.id


async def test_a_connection_with_its_own_json_codecs_stores_the_same_payload(queue, connection):
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, schema="pg_catalog", encoder=json.dumps, decoder=json.loads
        )
    async with connection.transaction():
        results = await enqueue_in_transaction(
            connection, [NewTask(handler="mail.send", payload={"to": "a@x", "n": [1, 2]})]
        )
    stored = await queue.get_task(results[0].task.id)
    assert stored is not None
    assert stored.payload == {"to": "a@x", "n": [1, 2]} == results[0].task.payload
    listed = await queue.list_tasks(TaskFilter(handler="mail.send"), limit=10, offset=0)
    assert listed.total == 1


async def test_a_failing_statement_is_a_store_error(queue, connection):
    await connection.execute("DROP FUNCTION longshore_enqueue")
    with pytest.raises(StoreError):
        await enqueue_in_transaction(connection, [NewTask(handler="mail.send")])
