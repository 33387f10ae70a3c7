"""The scheduler over real stores, in one process: paused schedules stay silent, resuming
never bursts, run-now fires once even while paused, overlap policies skip or replace, and
ticks missed while no scheduler ran are caught up once or not at all — on every backend.

Schedules here tick every second (a six-field spec), so each test takes a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.errors import SpecError, UnknownFactory
from scheduler.manager import ScheduleManager
from scheduler.service import SchedulerService
from scheduler.status import ScheduleStatus, tick_key
from store.events.models import Event, EventType, NewEvent, Stream
from store.queue.models import TaskFilter, TaskState
from store.schedules.models import CatchUp, OverlapPolicy, Schedule
from tests.integration.scheduler_instance import TICK_FACTORY, Stack, open_stack, tick_factories

EVERY_SECOND = "* * * * * *"
pytestmark = pytest.mark.slow


@dataclass
class RecordedEvents:
    """Collects appended events (the scheduler appends; the manager reads a schedule's
    newest events for its last firing)."""

    events: list[NewEvent] = field(default_factory=list)
    stored: list[Event] = field(default_factory=list)

    async def append(self, event: NewEvent) -> Event:
        self.events.append(event)
        stored = Event(
            id=len(self.events),
            stream=Stream(event.stream),
            key=event.key,
            type=event.type,
            at=datetime.now(UTC),
            data=event.data,
        )
        self.stored.append(stored)
        return stored

    async def latest(self, stream: Stream, key: str, limit: int = 25) -> list[Event]:
        found = [e for e in self.stored if e.stream is stream and e.key == key]
        return found[::-1][:limit]

    async def append_many(self, events: Sequence[NewEvent]) -> list[Event]:
        return [await self.append(event) for event in events]

    def of(self, type: str) -> list[NewEvent]:
        return [e for e in self.events if e.type == type]


@dataclass
class Harness:
    stack: Stack
    manager: ScheduleManager
    events: RecordedEvents

    def service(self, instance: str = "test") -> SchedulerService:
        return SchedulerService(
            store=self.stack.store,
            queue=self.stack.queue,
            factories=self.manager.factories,
            events=self.events,  # type: ignore[arg-type]
            instance=instance,
            poll_interval=0.2,
            leader_retry=0.2,
        )

    async def tasks(self) -> list[Any]:
        page = await self.stack.queue.list_tasks(
            TaskFilter(handler=TICK_FACTORY), limit=1000, offset=0
        )
        return list(page.items)


@pytest.fixture
async def harness(backend: str, queue_location: Any) -> AsyncIterator[Harness]:
    async with open_stack(backend, queue_location) as stack:
        events = RecordedEvents()
        manager = ScheduleManager(
            store=stack.store,
            queue=stack.queue,
            factories=tick_factories(),
            events=events,  # type: ignore[arg-type]
        )
        yield Harness(stack=stack, manager=manager, events=events)


def every_second(**overrides: Any) -> Schedule:
    fields: dict[str, Any] = {"name": "pulse", "spec": EVERY_SECOND, "factory": TICK_FACTORY}
    fields.update(overrides)
    return Schedule(**fields)


async def test_saving_checks_the_spec_the_zone_and_the_factory(harness: Harness) -> None:
    with pytest.raises(SpecError) as bad_spec:
        await harness.manager.save(every_second(spec="0 0 31 2 *"))
    assert bad_spec.value.field in ("spec", "day-of-month")
    with pytest.raises(SpecError) as bad_zone:
        await harness.manager.save(every_second(timezone="Mars/Olympus_Mons"))
    assert bad_zone.value.field == "timezone"
    with pytest.raises(UnknownFactory):
        await harness.manager.save(every_second(factory="nobody"))
    assert await harness.stack.store.get("pulse") is None


async def test_a_schedule_fires_every_tick_once_with_its_key(harness: Harness) -> None:
    await harness.manager.save(every_second())
    async with harness.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(3.2)
    tasks = await harness.tasks()
    assert 2 <= len(tasks) <= 5
    keys = [t.key for t in tasks]
    assert len(set(keys)) == len(keys)
    assert all(k.startswith("schedule:pulse:") and k.endswith("Z") for k in keys)
    fired = harness.events.of(EventType.SCHEDULE_FIRED)
    assert len(fired) == len(tasks)
    assert {e.data["key"] for e in fired} == set(keys)
    schedule = await harness.stack.store.get("pulse")
    assert schedule.last_task_id == max(t.id for t in tasks)
    view = await harness.manager.get("pulse")
    assert view.status is ScheduleStatus.HEALTHY


async def test_a_paused_schedule_does_not_fire_and_resuming_does_not_burst(
    harness: Harness,
) -> None:
    await harness.manager.save(every_second(paused=True))
    async with harness.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(2.5)
        assert await harness.tasks() == []
        assert (await harness.manager.get("pulse")).status is ScheduleStatus.PAUSED

        resumed_at = datetime.now(UTC)
        await harness.manager.resume("pulse")
        await asyncio.sleep(2.6)
    tasks = await harness.tasks()
    assert 1 <= len(tasks) <= 4, "resume continues from now: no burst of the paused ticks"
    assert all(t.created_at >= resumed_at for t in tasks)


async def test_pause_all_and_resume_all(harness: Harness) -> None:
    await harness.manager.save(every_second(name="a"))
    await harness.manager.save(every_second(name="b"))
    await harness.manager.pause_all()
    async with harness.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(2.2)
        assert await harness.tasks() == []
        assert (await harness.manager.get("a")).status is ScheduleStatus.PAUSED

        await harness.manager.resume_all()
        await asyncio.sleep(2.5)
        by_schedule = {t.key.split(":")[1] for t in await harness.tasks()}
        assert by_schedule == {"a", "b"}

        await harness.manager.pause_all()
        await asyncio.sleep(0.5)
        count = len(await harness.tasks())
        await asyncio.sleep(1.5)
        assert len(await harness.tasks()) == count


async def test_run_now_while_paused_runs_once(harness: Harness) -> None:
    await harness.manager.save(every_second(paused=True))
    result = await harness.manager.run_now("pulse")
    assert result.fired
    assert result.task is not None
    assert result.task.key.startswith("schedule:pulse:manual:")
    tasks = await harness.tasks()
    assert [t.id for t in tasks] == [result.task.id]
    [fired] = harness.events.of(EventType.SCHEDULE_FIRED)
    assert fired.data["trigger"] == "manual"
    schedule = await harness.stack.store.get("pulse")
    assert schedule.last_task_id == result.task.id
    assert schedule.last_fire_time is None, "a manual run is not a tick"


async def test_forbid_skips_while_the_previous_task_waits_and_records_the_skip(
    harness: Harness,
) -> None:
    await harness.manager.save(every_second(overlap_policy=OverlapPolicy.FORBID))
    async with harness.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(3.2)
    tasks = await harness.tasks()
    assert len(tasks) == 1, "nobody ran the first task, so every later tick was skipped"
    skips = harness.events.of("ScheduleSkipped")
    assert skips, "skips are recorded"
    assert {e.data["reason"] for e in skips} == {"overlap"}
    assert all(e.data["taskId"] == tasks[0].id for e in skips)

    # A manual run respects the policy too.
    result = await harness.manager.run_now("pulse")
    assert not result.fired
    assert result.skipped == "overlap"


async def test_replace_cancels_the_waiting_task_and_enqueues_anew(harness: Harness) -> None:
    await harness.manager.save(every_second(overlap_policy=OverlapPolicy.REPLACE))
    async with harness.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(3.2)
    tasks = await harness.tasks()
    assert len(tasks) == 1, "each firing cancelled the one before"
    assert tasks[0].state in (TaskState.READY, TaskState.SCHEDULED)
    fired = harness.events.of(EventType.SCHEDULE_FIRED)
    assert len(fired) >= 2
    assert all("replacedTaskId" in e.data for e in fired[1:])


async def _went_down_three_minutes_ago(harness: Harness, catch_up: CatchUp) -> datetime:
    """A daily schedule whose tick fell 90 s ago, saved (and last seen) 3 minutes ago."""
    now = datetime.now(UTC).replace(microsecond=0)
    missed = now - timedelta(seconds=90)
    spec = f"{missed.second} {missed.minute} {missed.hour} * * *"
    await harness.manager.save(
        Schedule(name="daily", spec=spec, factory=TICK_FACTORY, catch_up=catch_up)
    )
    db = harness.stack.db
    if hasattr(db, "fetch"):
        await db.execute("UPDATE schedules SET created_at = created_at - interval '3 minutes'")
    else:
        await db.write(
            lambda conn: conn.execute("UPDATE schedules SET created_at = created_at - 180000000")
        )
    view = await harness.manager.get("daily")
    assert view.status is ScheduleStatus.LAGGING, "a tick is overdue and nobody fired it"
    return missed


async def test_catch_up_latest_fires_the_missed_tick_once(harness: Harness) -> None:
    missed = await _went_down_three_minutes_ago(harness, CatchUp.LATEST)
    async with harness.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(0.5)
    async with harness.service("second") as service:  # a restart: nothing more to catch up
        assert await service.wait_until_leader(5)
        await asyncio.sleep(0.5)
    tasks = await harness.tasks()
    assert [t.key for t in tasks] == [tick_key("daily", missed)]
    [fired] = harness.events.of(EventType.SCHEDULE_FIRED)
    assert fired.data["trigger"] == "catch_up"
    assert (await harness.manager.get("daily")).status is ScheduleStatus.HEALTHY


async def test_catch_up_none_skips_the_missed_tick(harness: Harness) -> None:
    await _went_down_three_minutes_ago(harness, CatchUp.NONE)
    async with harness.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(0.5)
    assert await harness.tasks() == []
    [skip] = harness.events.of("ScheduleSkipped")
    assert skip.data["reason"] == "misfire"
    assert (await harness.manager.get("daily")).status is ScheduleStatus.HEALTHY


async def test_only_one_of_two_services_leads_and_the_other_takes_over(harness: Harness) -> None:
    await harness.manager.save(every_second())
    first, second = harness.service("first"), harness.service("second")
    await first.start()
    try:
        assert await first.wait_until_leader(5)
        await second.start()
        await asyncio.sleep(1.0)
        assert not second.is_leader
        await first.stop()
        assert await second.wait_until_leader(5)
        await asyncio.sleep(1.5)
    finally:
        await first.stop()
        await second.stop()
    tasks = await harness.tasks()
    keys = [t.key for t in tasks]
    assert len(keys) == len(set(keys)) >= 2
