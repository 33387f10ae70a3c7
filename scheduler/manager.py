"""What the admin API and the CLI do with schedules, on any instance (leader or not).

Saving validates what the store cannot: the spec and time zone (:class:`SpecError`, a 400
naming the field) and that the factory is registered (:class:`UnknownFactory`, a 412). Every
change goes through the store, which announces it to the leading scheduler wherever it runs.
Manual runs fire from this instance at once (the leader is not involved): they respect the
overlap policy, fire while paused, and are keyed ``schedule:<name>:manual:<uuid>``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from scheduler.factories import FactoryRegistry, FiringKind
from scheduler.firing import Firer, FiringResult
from scheduler.spec import parse_spec, parse_timezone
from scheduler.status import DEFAULT_LAG_THRESHOLD, ScheduleView, manual_key, view
from store.events.models import EventType, NewEvent
from store.events.protocol import EventStore
from store.queue.protocol import TaskQueue
from store.schedules.errors import ScheduleNotFound
from store.schedules.models import Page, Schedule, SchedulesState
from store.schedules.protocol import ScheduleStore

__all__ = ["ScheduleManager"]

logger = logging.getLogger(__name__)


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
        """Resume one schedule: it fires again from its next tick after now, no burst."""
        schedule = await self._store.set_paused(name, False)
        await self._event(EventType.SCHEDULE_RESUMED, name)
        return schedule

    async def pause_all(self) -> SchedulesState:
        return await self._store.set_all_paused(True)

    async def resume_all(self) -> SchedulesState:
        return await self._store.set_all_paused(False)

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

    async def get(self, name: str) -> ScheduleView | None:
        """One schedule with its next and previous run and its status."""
        schedule = await self._store.get(name)
        if schedule is None:
            return None
        return view(
            schedule, await self._store.state(), self._now(), lag_threshold=self._lag_threshold
        )

    async def list_views(self, *, limit: int, offset: int) -> Page[ScheduleView]:
        page = await self._store.list_schedules(limit=limit, offset=offset)
        state, now = await self._store.state(), self._now()
        items = [view(s, state, now, lag_threshold=self._lag_threshold) for s in page.items]
        return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)

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
