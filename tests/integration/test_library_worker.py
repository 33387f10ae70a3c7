"""The worker patterns: drain once, run beside an app, run until a signal; graceful stop,
the cancellation signal and lease renewal."""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

import longshore
from tests.integration.library_harness import EVENTUALLY, QUICK, eventually, library_url


@pytest.fixture
def url(backend, queue_location):
    return library_url(backend, queue_location)


@pytest.fixture
async def client(url):
    async with longshore.Client(url) as opened:
        yield opened


async def test_run_until_idle_returns_when_the_queue_is_drained(client):
    registry = longshore.Registry()
    done: list[int] = []

    @registry.handler("count")
    async def count(payload: dict) -> None:
        await asyncio.sleep(0.01)
        done.append(payload["n"])

    await client.enqueue_many(longshore.new_task(count, {"n": n}) for n in range(25))
    later = (await client.enqueue(count, {"n": 99}, run_at=timedelta(hours=1))).task
    worker = longshore.Worker(client, registry, concurrency=4, **QUICK)

    processed = await asyncio.wait_for(worker.run_until_idle(), EVENTUALLY)

    assert processed == 25 == worker.processed
    assert sorted(done) == list(range(25))
    assert (await client.list_tasks("ready")).total == 0
    assert [t.id for t in (await client.list_tasks("scheduled")).items] == [later.id]
    assert await client.queue.list_workers() == [], "the worker deregistered"


async def test_a_worker_given_a_url_opens_and_closes_its_own_client(url, client):
    registry = longshore.Registry()
    seen: list[str] = []

    @registry.handler("hello")
    async def hello(payload: dict, ctx: longshore.Context) -> None:
        seen.append(ctx.client.backend)

    await client.enqueue(hello, {})
    assert await longshore.Worker(url, registry, **QUICK).run_until_idle() == 1
    assert seen == [client.backend]


async def test_running_stops_cleanly_with_the_app(client):
    registry = longshore.Registry()
    started = asyncio.Event()
    finished: list[bool] = []

    @registry.handler("report")
    async def report(payload: dict, ctx: longshore.Context) -> None:
        started.set()
        await asyncio.wait_for(ctx.cancelled.wait(), EVENTUALLY)  # the app is stopping
        await asyncio.sleep(0.1)  # checkpoint, within the grace period
        finished.append(True)

    worker = longshore.Worker(client, registry, **QUICK)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with worker.running():
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/reports")
    async def create() -> dict[str, int]:
        return {"taskId": (await client.enqueue(report, {})).task.id}

    async with app.router.lifespan_context(app):
        await eventually(lambda: _registered(client, worker.worker_id))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            task_id = (await http.post("/reports")).json()["taskId"]
        await asyncio.wait_for(started.wait(), EVENTUALLY)

    assert finished == [True], "the handler finished within the grace period"
    assert await client.get(task_id) is None, "its completion was written before the stop"
    assert await client.queue.list_workers() == []


async def test_running_fails_at_once_when_the_database_cannot_be_reached():
    registry = longshore.Registry()
    worker = longshore.Worker("postgresql://nobody@127.0.0.1:9/none", registry, **QUICK)
    with pytest.raises(longshore.StoreUnavailable):
        async with worker.running():
            pytest.fail("the worker cannot have started")


async def test_run_works_until_sigterm_and_then_stops_gracefully(client):
    registry = longshore.Registry()
    ran = asyncio.Event()

    @registry.handler("tick")
    async def tick(payload: dict) -> None:
        ran.set()

    await client.enqueue(tick, {})
    worker = longshore.Worker(client, registry, **QUICK)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(ran.wait(), EVENTUALLY)
    await eventually(lambda: _empty(client))
    os.kill(os.getpid(), signal.SIGTERM)

    assert await asyncio.wait_for(running, EVENTUALLY) == 1
    assert await client.queue.list_workers() == []


async def test_extend_lease_renews_it_and_says_it_is_still_held(client):
    registry = longshore.Registry()
    held: list[bool] = []

    @registry.handler("long")
    async def long(payload: dict, ctx: longshore.Context) -> None:
        before = await client.get(ctx.task_id)
        held.append(await ctx.extend_lease())
        after = await client.get(ctx.task_id)
        assert before is not None
        assert after is not None
        assert after.lease_expires_at is not None
        assert before.lease_expires_at is not None
        held.append(after.lease_expires_at >= before.lease_expires_at)
        held.append(ctx.cancelled.is_set())

    await client.enqueue(long, {})
    await longshore.Worker(client, registry, **QUICK).run_until_idle()
    assert held == [True, True, False]


async def test_weights_and_queue_limits_are_applied_when_the_worker_starts(client):
    registry = longshore.Registry()
    worker = longshore.Worker(
        client, registry, weights={"fast": 5}, queue_limits={"serial": 1}, **QUICK
    )
    await worker.run_until_idle()
    fast = await client.queue.get_queue("fast")
    serial = await client.queue.get_queue("serial")
    assert fast is not None
    assert fast.weight == 5
    assert serial is not None
    assert serial.concurrency_limit == 1


async def _empty(client: longshore.Client) -> bool:
    return (await client.list_tasks()).total == 0


async def _registered(client: longshore.Client, worker_id: str) -> bool:
    return [w.info.worker_id for w in await client.queue.list_workers()] == [worker_id]
