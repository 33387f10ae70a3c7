"""Schedules for your own handlers: a schedulable handler is a factory, the library worker
runs the (leader-elected) scheduler, its firings run the handler and call cron_tick hooks."""

from __future__ import annotations

import pytest

import longshore
from tests.integration.library_harness import QUICK, eventually, library_url


@pytest.fixture
async def client(backend, queue_location):
    async with longshore.Client(library_url(backend, queue_location)) as opened:
        yield opened


async def test_a_schedule_of_a_library_handler_fires_in_the_worker(client):
    registry = longshore.Registry()
    runs: list[dict] = []
    ticks: list[longshore.CronTick] = []

    @registry.handler("heartbeat", schedulable=True)
    async def heartbeat(payload: dict, ctx: longshore.Context) -> None:
        runs.append({"key": ctx.key, **payload})

    @registry.on("cron_tick")
    async def on_tick(tick: longshore.CronTick) -> None:
        ticks.append(tick)

    worker = longshore.Worker(client, registry, cron={"heartbeat": "@every 1s"}, **QUICK)
    async with worker.running():
        await eventually(lambda: _at_least(runs, 2))

    schedule = await client.stores.schedules.get("heartbeat")
    assert schedule is not None
    assert (schedule.spec, schedule.factory) == ("@every 1s", "heartbeat")
    assert all(run["key"].startswith("schedule:heartbeat:") for run in runs)
    assert len(ticks) >= 2
    assert (ticks[0].schedule, ticks[0].handler, ticks[0].client) == (
        "heartbeat",
        "heartbeat",
        client,
    )


async def test_factories_can_take_their_own_name_queue_and_retries():
    registry = longshore.Registry()

    @registry.handler("report:build")
    async def build(payload: dict) -> None: ...

    with pytest.raises(longshore.LibraryError, match="factory name"):
        registry.schedule_factory("report:build")
    registry.schedule_factory("report:build", name="nightly-report", queue="reports", retry="fast")
    (spec,) = registry.factories
    assert (spec.name, spec.handler, spec.queue, spec.retry.max_attempts) == (
        "nightly-report",
        "report:build",
        "reports",
        3,
    )


async def _at_least(items: list, count: int) -> bool:
    return len(items) >= count
