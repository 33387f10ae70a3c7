"""One firing of a schedule: the overlap policy, the factory, the keyed enqueue, the record
and the event. Shared by clock ticks, catch-up and manual runs.

A firing only enqueues. Its key (``schedule:<name>:<fire time>``, or
``schedule:<name>:manual:<uuid>``) uses ``dedupe``, so a tick enqueued twice (two instances
that both believe they lead, for a moment) yields one task; the second attempt sees
``deduplicated`` and writes no event.

Events (stream ``schedules``, key = schedule name) carry ``scheduledAt`` and ``firedAt``
(ISO 8601 UTC) and ``trigger`` (``tick`` | ``catch_up`` | ``manual``):

- ``ScheduleFired`` with ``taskId``, ``key`` and, for ``replace``, ``replacedTaskId``;
- ``ScheduleSkipped`` with ``reason``: ``paused``, ``overlap`` (``taskId``, ``taskState``),
  ``misfire`` (``missedFrom``/``missedUntil`` for a range), ``unknown_factory``,
  ``factory_failed`` or ``store_unavailable``, and a human ``detail``. The event store has
  no ``ScheduleSkipped`` member in ``EventType``; it accepts any past-tense name.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scheduler.factories import Factory, FactoryRegistry, Firing, FiringKind
from scheduler.status import tick_key
from store.errors import StoreError, TaskNotFound, TaskNotWaiting
from store.events.models import EventType, NewEvent
from store.events.protocol import EventStore
from store.queue.models import EnqueueOutcome, KeyMode, Task, TaskState
from store.queue.protocol import TaskQueue
from store.schedules.models import OverlapPolicy, Schedule
from store.schedules.protocol import ScheduleStore

__all__ = ["SCHEDULE_SKIPPED", "Firer", "FiringResult", "SkipReason"]

logger = logging.getLogger(__name__)

SCHEDULE_SKIPPED = "ScheduleSkipped"
_ACTIVE = frozenset({TaskState.READY, TaskState.SCHEDULED, TaskState.RUNNING})


class SkipReason:
    PAUSED = "paused"
    OVERLAP = "overlap"
    MISFIRE = "misfire"
    UNKNOWN_FACTORY = "unknown_factory"
    FACTORY_FAILED = "factory_failed"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True, kw_only=True)
class FiringResult:
    """What became of one firing: a task (``fired``) or a skip with its reason.

    ``deduplicated`` means the key was enqueued before (by another instance): ``task`` is
    that earlier task and no event was written.
    """

    schedule: str
    kind: FiringKind
    fire_time: datetime
    task: Task | None = None
    skipped: str | None = None
    detail: str = ""
    deduplicated: bool = False

    @property
    def fired(self) -> bool:
        return self.task is not None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Firer:
    """Fires schedules into the queue; see the module docstring."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        queue: TaskQueue,
        factories: FactoryRegistry,
        events: EventStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._queue = queue
        self._factories = factories
        self._events = events
        self._now = clock

    async def fire(
        self, schedule: Schedule, *, kind: FiringKind, fire_time: datetime, key: str | None = None
    ) -> FiringResult:
        """Fire ``schedule`` for ``fire_time`` (a tick, or the request time of a manual run,
        which then passes its own ``key``). Ticks are recorded as handled whether they fire
        or are skipped. Raises :class:`StoreUnavailable` when the queue cannot be reached
        (nothing enqueued, nothing recorded): the caller decides whether to retry."""
        factory = self._factories.get(schedule.factory)
        if factory is None:
            return await self.skip(
                schedule,
                kind=kind,
                fire_time=fire_time,
                reason=SkipReason.UNKNOWN_FACTORY,
                detail=f"no factory named {schedule.factory!r} is registered",
            )
        replaced: int | None = None
        if schedule.overlap_policy is not OverlapPolicy.ALLOW:
            blocked, replaced = await self._resolve_overlap(schedule, factory)
            if blocked is not None:
                return await self.skip(
                    schedule,
                    kind=kind,
                    fire_time=fire_time,
                    reason=SkipReason.OVERLAP,
                    detail=blocked[0],
                    taskId=blocked[1].id,
                    taskState=blocked[1].state.value,
                )
        try:
            produced = await factory.produce(
                Firing(
                    schedule=schedule.name,
                    fire_time=fire_time,
                    payload=dict(schedule.payload),
                    kind=kind,
                )
            )
            task_key = key or tick_key(schedule.name, fire_time)
            new_task = dataclasses.replace(produced, key=task_key, key_mode=KeyMode.DEDUPE)
        except Exception as exc:
            logger.exception("schedule factory failed", extra={"schedule": schedule.name})
            return await self.skip(
                schedule,
                kind=kind,
                fire_time=fire_time,
                reason=SkipReason.FACTORY_FAILED,
                detail=f"factory {schedule.factory!r} failed: {exc}",
            )
        result = await self._queue.enqueue(new_task)
        deduplicated = result.outcome is EnqueueOutcome.DEDUPLICATED
        await self._store.record_firing(
            schedule.name,
            fire_time=None if kind is FiringKind.MANUAL else fire_time,
            task_id=result.task.id,
        )
        fired = FiringResult(
            schedule=schedule.name,
            kind=kind,
            fire_time=fire_time,
            task=result.task,
            deduplicated=deduplicated,
        )
        extra = {"schedule": schedule.name, "task_id": result.task.id, "key": task_key}
        if deduplicated:
            logger.info("schedule tick was already enqueued", extra=extra)
            return fired
        logger.info("schedule fired", extra={**extra, "trigger": kind.value})
        data: dict[str, Any] = {"taskId": result.task.id, "key": task_key}
        if replaced is not None:
            data["replacedTaskId"] = replaced
        await self._event(EventType.SCHEDULE_FIRED, schedule.name, kind, fire_time, data)
        return fired

    async def skip(
        self,
        schedule: Schedule,
        *,
        kind: FiringKind,
        fire_time: datetime,
        reason: str,
        detail: str,
        record: bool = True,
        **data: Any,
    ) -> FiringResult:
        """Record a skipped firing: a ``ScheduleSkipped`` event and, for a tick (with
        ``record``), the tick as handled."""
        logger.info(
            "schedule skipped",
            extra={"schedule": schedule.name, "reason": reason, "detail": detail},
        )
        if record and kind is not FiringKind.MANUAL:
            try:
                await self._store.record_firing(schedule.name, fire_time=fire_time, task_id=None)
            except StoreError as exc:
                logger.warning(
                    "could not record a skipped tick",
                    extra={"schedule": schedule.name, "error": str(exc)},
                )
        await self._event(
            SCHEDULE_SKIPPED,
            schedule.name,
            kind,
            fire_time,
            {"reason": reason, "detail": detail, **data},
        )
        return FiringResult(
            schedule=schedule.name, kind=kind, fire_time=fire_time, skipped=reason, detail=detail
        )

    async def _resolve_overlap(
        self, schedule: Schedule, factory: Factory
    ) -> tuple[tuple[str, Task] | None, int | None]:
        """Apply ``forbid``/``replace`` against the schedule's latest task. Returns (why and
        which task blocks the firing, or ``None``; the id of a task cancelled to make room)."""
        # The runtime state is read fresh: a manual run elsewhere may have set a new task.
        fresh = await self._store.get(schedule.name)
        last_id = None if fresh is None else fresh.last_task_id
        if last_id is None:
            return None, None
        task = await self._queue.get_task(last_id)
        if task is None or task.state not in _ACTIVE:
            return None, None
        if schedule.overlap_policy is OverlapPolicy.FORBID:
            return (f"task {task.id} of the previous firing is {task.state.value}", task), None
        if task.state is not TaskState.RUNNING:
            try:
                await self._queue.cancel(task.id)
                return None, task.id
            except TaskNotFound:
                return None, None
            except TaskNotWaiting:
                refreshed = await self._queue.get_task(task.id)
                if refreshed is None or refreshed.state not in _ACTIVE:
                    return None, None
                task = refreshed
        if factory.cancel_running is None:
            return (
                f"task {task.id} is running and factory {factory.name!r} cannot cancel it",
                task,
            ), None
        if not await factory.cancel_running(task):
            return (f"task {task.id} is running and could not be cancelled", task), None
        return None, task.id

    async def _event(
        self,
        type: str,
        name: str,
        kind: FiringKind,
        fire_time: datetime,
        data: dict[str, Any],
    ) -> None:
        if self._events is None:
            return
        event = NewEvent.schedule(
            type,
            schedule=name,
            scheduledAt=_iso(fire_time),
            firedAt=_iso(self._now()),
            trigger=kind.value,
            **data,
        )
        try:
            await self._events.append(event)
        except Exception as exc:  # an event lost must not undo a firing already enqueued
            logger.warning(
                "could not append a schedule event",
                extra={"schedule": name, "type": type, "error": str(exc)},
            )
