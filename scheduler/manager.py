"""What the admin API and the CLI do with schedules, on any instance (leader or not).

Saving validates what the store cannot: the spec and time zone (:class:`SpecError`, a 400
naming the field) and that the factory is registered (:class:`UnknownFactory`, a 412). Every
change goes through the store, which announces it to the leading scheduler wherever it runs.
Manual runs fire from this instance at once (the leader is not involved): they respect the
overlap policy, fire while paused, and are keyed ``schedule:<name>:manual:<uuid>``.

Pausing or resuming all sets every schedule's own flag (one ``SchedulePaused`` or
``ScheduleResumed`` event each), so each schedule is in the state it shows and can then be
resumed or paused on its own. The store's pause-all switch (an earlier way of pausing all)
is turned off on the way: its schedules keep being paused, by their own flags.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from scheduler.factories import FactoryRegistry, FiringKind
from scheduler.firing import Firer, FiringResult
from scheduler.spec import parse_spec, parse_timezone
from scheduler.status import DEFAULT_LAG_THRESHOLD, ScheduleView, manual_key, view
from store.events.models import EventType, NewEvent, Stream, to_ms
from store.events.protocol import EventStore
from store.queue.protocol import TaskQueue
from store.schedules.errors import ScheduleNotFound
from store.schedules.models import Page, Schedule
from store.schedules.protocol import ScheduleStore

__all__ = ["ScheduleManager"]

logger = logging.getLogger(__name__)

LAST_FIRED_SCAN_MAX = 1024
"""How many of a schedule's newest events are searched for its last firing (a schedule
that only skipped for longer shows none)."""


class ScheduleManager:
    """Create, change, inspect and run schedules; see the module docstring."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        queue: TaskQueue,
        factories: FactoryRegistry,
        events: EventStore | None = None,
        lag_threshold: timedelta = DEFAULT_LAG_THRESHOLD,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._factories = factories
        self._events = events
        self._lag_threshold = lag_threshold
        self._now = clock
        self._firer = Firer(
            store=store, queue=queue, factories=factories, events=events, clock=clock
        )

    @property
    def factories(self) -> FactoryRegistry:
        return self._factories

    def validate(self, schedule: Schedule) -> None:
        """Raise :class:`SpecError` for a bad spec or zone, :class:`UnknownFactory` for a
        factory nobody registered."""
        parse_spec(schedule.spec)
        parse_timezone(schedule.timezone)
        self._factories.require(schedule.factory)

    async def save(self, schedule: Schedule) -> tuple[Schedule, bool]:
        """Validate and save (create or replace) a schedule; see ``ScheduleStore.upsert``."""
        self.validate(schedule)
        saved, created = await self._store.upsert(schedule)
        if created:
            await self._event(EventType.SCHEDULE_CREATED, saved.name, revision=saved.revision)
        return saved, created

    async def delete(self, name: str) -> bool:
        deleted = await self._store.delete(name)
        if deleted:
            await self._event(EventType.SCHEDULE_DELETED, name)
        return deleted

    async def pause(self, name: str) -> Schedule:
        """Pause one schedule (raises :class:`ScheduleNotFound`)."""
        schedule = await self._store.set_paused(name, True)
        await self._event(EventType.SCHEDULE_PAUSED, name)
        return schedule

    async def resume(self, name: str) -> Schedule:
        """Resume one schedule: it fires again from its next tick after now, no burst.
        Under the store's pause-all switch, the others stay paused by their own flags."""
        if (await self._store.state()).all_paused:
            await self._set_every(paused=True)
        schedule = await self._store.set_paused(name, False)
        await self._event(EventType.SCHEDULE_RESUMED, name)
        return schedule

    async def pause_all(self) -> int:
        """Pause every schedule; return how many were not paused before."""
        return await self._set_every(paused=True)

    async def resume_all(self) -> int:
        """Resume every schedule (each from its next tick after now, no burst); return how
        many were paused before."""
        return await self._set_every(paused=False)

    async def _set_every(self, *, paused: bool) -> int:
        state = await self._store.state()
        changed = 0
        for schedule in await self._store.list_all():
            if schedule.paused != paused:
                try:
                    await self._store.set_paused(schedule.name, paused)
                except ScheduleNotFound:  # deleted meanwhile
                    continue
                kind = EventType.SCHEDULE_PAUSED if paused else EventType.SCHEDULE_RESUMED
                await self._event(kind, schedule.name)
            if (schedule.paused or state.all_paused) != paused:
                changed += 1
        if state.all_paused:
            await self._store.set_all_paused(False)
        return changed

    async def run_now(self, name: str) -> FiringResult:
        """Enqueue the schedule's task now (also while paused), unless the overlap policy
        says otherwise. Raises :class:`ScheduleNotFound`; the rate cap is the caller's."""
        schedule = await self._store.get(name)
        if schedule is None:
            raise ScheduleNotFound(name)
        return await self._firer.fire(
            schedule,
            kind=FiringKind.MANUAL,
            fire_time=self._now(),
            key=manual_key(name, uuid.uuid4().hex),
        )

    async def leader(self) -> str | None:
        """The scheduler instance that fires the schedules now (in any process), ``None``
        when none leads; see ``ScheduleStore.leader``."""
        return await self._store.leader()

    async def schedule(self, name: str) -> Schedule | None:
        """The stored schedule called ``name`` (without derived times), or ``None``."""
        return await self._store.get(name)

    async def get(self, name: str) -> ScheduleView | None:
        """One schedule with its next and previous run, its last firing and its status."""
        schedule = await self._store.get(name)
        if schedule is None:
            return None
        found = view(
            schedule, await self._store.state(), self._now(), lag_threshold=self._lag_threshold
        )
        return dataclasses.replace(found, last_fired=await self._last_fired(schedule))

    async def list_views(
        self, *, limit: int, offset: int, last_fired: bool = True
    ) -> Page[ScheduleView]:
        """Schedules by name with their derived times; ``last_fired=False`` leaves
        ``last_fired`` unset and skips reading each schedule's events (for counts)."""
        page = await self._store.list_schedules(limit=limit, offset=offset)
        state, now = await self._store.state(), self._now()
        fired: list[datetime | None] = [None] * len(page.items)
        if last_fired:
            fired = await asyncio.gather(*(self._last_fired(s) for s in page.items))
        items = [
            dataclasses.replace(
                view(s, state, now, lag_threshold=self._lag_threshold), last_fired=last
            )
            for s, last in zip(page.items, fired, strict=True)
        ]
        return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)

    async def _last_fired(self, schedule: Schedule) -> datetime | None:
        """When ``schedule`` last enqueued its task, from its ``ScheduleFired`` events
        (``None`` without an event store, or when none is found since it was created)."""
        if self._events is None:
            return None
        created_ms = 0 if schedule.created_at is None else to_ms(schedule.created_at)
        window = 16
        while True:
            events = await self._events.latest(Stream.SCHEDULES, schedule.name, window)
            for event in events:
                if event.at_ms < created_ms:
                    return None  # an earlier schedule of the same name
                if event.type == EventType.SCHEDULE_FIRED:
                    return event.at
            if len(events) < window or window >= LAST_FIRED_SCAN_MAX:
                return None
            window *= 4

    async def apply_presets(self, presets: Mapping[str, str]) -> list[Schedule]:
        """Create a schedule per preset (``{name: spec}``, factory = name) unless one of that
        name exists; an existing schedule's spec is set to the preset's (presets are
        overrides), everything else kept. Returns the schedules created or changed."""
        changed: list[Schedule] = []
        for name, spec in presets.items():
            existing = await self._store.get(name)
            if existing is None:
                saved, _ = await self.save(Schedule(name=name, spec=spec))
            elif existing.spec != spec:
                saved, _ = await self.save(_with_spec(existing, spec))
            else:
                continue
            changed.append(saved)
        return changed

    async def _event(self, type: str, name: str, **data: object) -> None:
        if self._events is None:
            return
        try:
            await self._events.append(NewEvent.schedule(type, schedule=name, **data))
        except Exception as exc:  # the change is made; a lost event must not undo it
            logger.warning(
                "could not append a schedule event",
                extra={"schedule": name, "type": type, "error": str(exc)},
            )


def _with_spec(schedule: Schedule, spec: str) -> Schedule:
    return Schedule(
        name=schedule.name,
        spec=spec,
        timezone=schedule.timezone,
        factory=schedule.factory,
        payload=schedule.payload,
        paused=schedule.paused,
        durable=schedule.durable,
        overlap_policy=schedule.overlap_policy,
        misfire_grace_seconds=schedule.misfire_grace_seconds,
        catch_up=schedule.catch_up,
    )
