"""Missed firings: a schedule's leader stopped through its firings and started again records
exactly one ``ScheduleMissed`` per firing nobody enqueued (none for a paused schedule), and
the ``missed`` rule's receiver on loopback is told of each, signed. A real runtime as
``longshore serve`` opens it (scheduler leading, SQLite), stopped and opened again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.spec import next_fire_time, parse_spec, parse_timezone
from service.lifecycle import Runtime, open_runtime
from service.runtime import build_registry
from service.settings import load_settings
from service.worker import Worker, WorkerOptions
from store.events import EventFilter, Stream
from store.notifications.models import Channel, NotificationRule, RuleEvent, RuleScope
from store.schedules.models import Schedule
from tests.integration.webhook_receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

SPEC = "*/2 * * * * *"
SECRET = "missed-secret-1b2c"


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = load_settings(
        {},
        data_dir=tmp_path / "data",
        durable_cron_handlers=("builtin.noop",),
        notify_retry_seconds=0.2,
        run_retention_interval=0,
    )
    async with open_runtime(settings, role="serve") as runtime:
        assert runtime.scheduler is not None
        assert await runtime.scheduler.wait_until_leader(10)
        yield runtime


@asynccontextmanager
async def working(runtime: Runtime) -> AsyncIterator[None]:
    registry = build_registry(runtime.job_runner, deliverer=runtime.deliverer)
    options = WorkerOptions(concurrency=2, poll_interval=0.05, heartbeat_interval=1.0)
    stop = asyncio.Event()
    running = asyncio.create_task(Worker(runtime.stores.queue, registry, options).run(stop))
    try:
        yield
    finally:
        stop.set()
        await running


async def schedule_events(runtime: Runtime, kind: str, name: str) -> list[Any]:
    found = await runtime.events.since(
        0, EventFilter(streams=frozenset({Stream.SCHEDULES}), types=frozenset({kind})), 10_000
    )
    return [event for event in found if event.key == name]


def at(event: Any) -> datetime:
    return datetime.fromisoformat(str(event.data["scheduledAt"]).replace("Z", "+00:00"))


async def until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_leader_stopped_through_firings_records_one_missed_per_missed_firing(
    backend: str, tmp_path: Path
) -> None:
    receiver = Receiver.reserve().start()
    try:
        async with serving(tmp_path) as first:
            await first.stores.notifications.upsert(
                NotificationRule(
                    name="missed-hook",
                    scope=RuleScope.GLOBAL,
                    events=(RuleEvent.MISSED,),
                    channel=Channel.WEBHOOK,
                    url=receiver.url("/missed"),
                    secret=SECRET,
                )
            )
            common: dict[str, Any] = {"spec": SPEC, "factory": "builtin.noop"}
            await first.manager.save(Schedule(name="every2", misfire_grace_seconds=1, **common))
            await first.manager.save(Schedule(name="paused2", paused=True, **common))

            async def fired() -> bool:
                return bool(await schedule_events(first, "ScheduleFired", "every2"))

            await until(fired, "the first firing")
        stopped_at = datetime.now().astimezone()
        await asyncio.sleep(5.2)  # the leader is gone through at least two firings

        async with serving(tmp_path) as second, working(second):
            firings = await schedule_events(second, "ScheduleFired", "every2")
            before = max(at(event) for event in firings if at(event) <= stopped_at)

            async def fired_again() -> bool:
                events = await schedule_events(second, "ScheduleFired", "every2")
                return any(at(event) > before for event in events)

            await until(fired_again, "a firing after the restart")
            resumed = min(
                at(event)
                for event in await schedule_events(second, "ScheduleFired", "every2")
                if at(event) > before
            )
            spec, zone = parse_spec(SPEC), parse_timezone("UTC")
            expected: list[datetime] = []
            moment = next_fire_time(spec, before, zone)
            while moment is not None and moment < resumed:
                expected.append(moment)
                moment = next_fire_time(spec, moment, zone)
            assert len(expected) >= 2

            missed = await schedule_events(second, "ScheduleMissed", "every2")
            assert sorted(at(event) for event in missed) == expected  # one each, no repeat
            assert await schedule_events(second, "ScheduleMissed", "paused2") == []
            assert all(event.data["reason"] == "misfire" for event in missed)

            async def told() -> bool:
                return len(receiver.at("/missed")) >= len(expected)

            await until(told, "the missed notifications")
            await asyncio.sleep(0.5)  # nothing more arrives
            notes = receiver.at("/missed")
            assert len(notes) == len(expected)
            assert all(note.signed_by(SECRET) for note in notes)
            bodies = [note.json() for note in notes]
            assert {body["event"] for body in bodies} == {"missed"}
            assert {body["subject"]["schedule"] for body in bodies} == {"every2"}
            told_at = sorted(
                datetime.fromisoformat(body["subject"]["scheduledAt"]) for body in bodies
            )
            assert told_at == expected
            assert timedelta(0) < resumed - expected[-1]
    finally:
        receiver.stop()
