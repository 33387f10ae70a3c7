"""The scheduler fires the ticks due at one instant as one batch: one ``enqueue_many``, one
``record_firings`` and one ``append_many`` of events per batch, not one of each per tick;
ticks past their grace are skipped in batches too; every tick is still enqueued once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from scheduler.firing import SCHEDULE_SKIPPED
from scheduler.manager import ScheduleManager
from scheduler.service import SchedulerService
from store.events.models import Event, EventType, NewEvent, Stream
from store.queue.models import NewTask, TaskFilter
from store.schedules.models import FiringRecord, OverlapPolicy, Schedule
from tests.integration.scheduler_instance import TICK_FACTORY, Stack, open_stack, tick_factories

SCHEDULES = 40


@dataclass
class CountingEvents:
    """Collects appended events and counts the calls."""

    events: list[NewEvent] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    async def append(self, event: NewEvent) -> Event:
        self.calls["append"] += 1
        return self._add(event)

    async def append_many(self, events: Sequence[NewEvent]) -> list[Event]:
        self.calls["append_many"] += 1
        return [self._add(event) for event in events]

    def _add(self, event: NewEvent) -> Event:
        self.events.append(event)
        return Event(
            id=len(self.events),
            stream=Stream(event.stream),
            key=event.key,
            type=event.type,
            at=datetime.now(UTC),
            data=event.data,
        )

    def of(self, type: str) -> list[NewEvent]:
        return [e for e in self.events if e.type == type]


class CountingQueue:
    """The real queue, counting the enqueue calls the scheduler makes."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self.calls: Counter[str] = Counter()
        self.batch_sizes: list[int] = []

    async def enqueue(self, task: NewTask) -> Any:
        self.calls["enqueue"] += 1
        return await self._queue.enqueue(task)

    async def enqueue_many(self, tasks: Sequence[NewTask]) -> Any:
        self.calls["enqueue_many"] += 1
        self.batch_sizes.append(len(tasks))
        return await self._queue.enqueue_many(tasks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


class CountingStore:
    """The real schedule store, counting the firing records."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    async def record_firing(self, *args: Any, **kwargs: Any) -> bool:
        self.calls["record_firing"] += 1
        result: bool = await self._store.record_firing(*args, **kwargs)
        return result

    async def record_firings(self, records: Sequence[FiringRecord]) -> set[str]:
        self.calls["record_firings"] += 1
        result: set[str] = await self._store.record_firings(records)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class Rig:
    stack: Stack
    queue: CountingQueue
    store: CountingStore
    events: CountingEvents
    manager: ScheduleManager

    def service(self) -> SchedulerService:
        return SchedulerService(
            store=self.store,  # type: ignore[arg-type]
            queue=self.queue,  # type: ignore[arg-type]
            factories=self.manager.factories,
            events=self.events,  # type: ignore[arg-type]
            poll_interval=0.2,
            leader_retry=0.2,
        )

    async def save_all(self, **overrides: Any) -> list[str]:
        names = [f"pulse-{i:03d}" for i in range(SCHEDULES)]
        for name in names:
            await self.manager.save(
                Schedule(name=name, spec="* * * * * *", factory=TICK_FACTORY, **overrides)
            )
        return names

    async def tasks(self) -> list[Any]:
        page = await self.stack.queue.list_tasks(
            TaskFilter(handler=TICK_FACTORY), limit=10_000, offset=0
        )
        return list(page.items)


@pytest.fixture
async def rig(backend: str, queue_location: Any) -> AsyncIterator[Rig]:
    async with open_stack(backend, queue_location) as stack:
        events = CountingEvents()
        manager = ScheduleManager(
            store=stack.store,
            queue=stack.queue,
            factories=tick_factories(),
            events=events,  # type: ignore[arg-type]
        )
        yield Rig(
            stack=stack,
            queue=CountingQueue(stack.queue),
            store=CountingStore(stack.store),
            events=events,
            manager=manager,
        )


async def test_the_ticks_of_one_instant_are_enqueued_recorded_and_reported_together(
    rig: Rig,
) -> None:
    names = await rig.save_all()
    rig.events.calls.clear()
    async with rig.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(3.3)

    tasks = await rig.tasks()
    keys = [t.key for t in tasks]
    assert len(keys) == len(set(keys)), "a tick was enqueued twice"
    per_schedule = Counter(key.split(":")[1] for key in keys)
    assert set(per_schedule) == set(names)
    # Every schedule got every full second the service led (2-4 of them), all alike.
    assert len(set(per_schedule.values())) <= 2
    assert min(per_schedule.values()) >= 2
    # One enqueue_many per batch; a batch holds all the schedules of an instant.
    assert rig.queue.calls["enqueue"] == 0
    assert rig.queue.calls["enqueue_many"] <= max(per_schedule.values()) + 1
    assert max(rig.queue.batch_sizes) == SCHEDULES
    assert rig.store.calls["record_firing"] == 0
    assert rig.store.calls["record_firings"] <= rig.queue.calls["enqueue_many"]
    assert rig.events.calls["append"] == 0
    assert rig.events.calls["append_many"] <= rig.queue.calls["enqueue_many"]
    fired = rig.events.of(EventType.SCHEDULE_FIRED)
    assert sorted(e.data["key"] for e in fired) == sorted(keys)
    latest = max(t.id for t in tasks if t.key.startswith(f"schedule:{names[0]}:"))
    assert (await rig.stack.store.get(names[0])).last_task_id == latest


async def test_ticks_past_their_grace_are_skipped_in_batches(rig: Rig) -> None:
    # A grace of 0 s: every tick reaches the queue late, so every tick is a misfire.
    names = await rig.save_all(misfire_grace_seconds=0)
    rig.events.calls.clear()
    async with rig.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(2.3)

    assert await rig.tasks() == []
    skips = rig.events.of(SCHEDULE_SKIPPED)
    assert skips
    assert {e.data["reason"] for e in skips} == {"misfire"}
    per_instant = Counter(e.data["scheduledAt"] for e in skips)
    assert set(per_instant.values()) == {SCHEDULES}
    assert rig.queue.calls["enqueue_many"] == rig.queue.calls["enqueue"] == 0
    assert rig.store.calls["record_firing"] == 0
    assert rig.store.calls["record_firings"] <= len(per_instant) + 1
    assert rig.events.calls["append"] == 0
    assert rig.events.calls["append_many"] <= len(per_instant) + 1
    handled = await rig.stack.store.get(names[-1])
    assert handled.last_fire_time is not None


async def test_forbid_in_a_batch_reads_the_previous_tasks_in_one_query(rig: Rig) -> None:
    # No worker runs: each schedule's first task stays ready, so forbid skips every later tick.
    await rig.save_all(overlap_policy=OverlapPolicy.FORBID)
    async with rig.service() as service:
        assert await service.wait_until_leader(5)
        await asyncio.sleep(3.3)

    tasks = await rig.tasks()
    assert sorted(Counter(t.key.split(":")[1] for t in tasks).values()) == [1] * SCHEDULES
    skips = rig.events.of(SCHEDULE_SKIPPED)
    assert skips
    assert {e.data["reason"] for e in skips} == {"overlap"}
    by_name = {t.key.split(":")[1]: t.id for t in tasks}
    assert all(e.data["taskId"] == by_name[e.key] for e in skips)
    assert {e.data["taskState"] for e in skips} == {"ready"}
