"""Firings of schedules: the overlap policy, the factory, the keyed enqueue, the record and
the event. Shared by clock ticks, catch-up and manual runs.

Firings are made in batches (:meth:`Firer.fire_many`, :meth:`Firer.skip_many`): the ticks
of one batch cost one ``last_tasks`` read (only for ``forbid``/``replace`` schedules), one
``enqueue_many`` (one transaction), one ``record_firings`` and one ``append_many`` of their
events, whatever their number. :meth:`Firer.fire` and :meth:`Firer.skip` are batches of one.

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

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scheduler.factories import Factory, FactoryRegistry, Firing, FiringKind
from scheduler.status import tick_key
from store.errors import StoreError, StoreUnavailable, TaskNotFound, TaskNotWaiting
from store.events.models import EventType, NewEvent
from store.events.protocol import EventStore
from store.queue.models import EnqueueOutcome, EnqueueResult, KeyMode, NewTask, Task, TaskState
from store.queue.protocol import TaskQueue
from store.schedules.models import FiringRecord, OverlapPolicy, Schedule
from store.schedules.protocol import ScheduleStore

__all__ = ["SCHEDULE_SKIPPED", "Firer", "FiringResult", "Skip", "SkipReason", "Tick"]

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


@dataclass(frozen=True, kw_only=True)
class Tick:
    """A firing to make: ``schedule`` for ``fire_time`` (a tick, or the request time of a
    manual run, which then passes its own ``key``)."""

    schedule: Schedule
    kind: FiringKind
    fire_time: datetime
    key: str | None = None


@dataclass(frozen=True, kw_only=True)
class Skip:
    """A firing not made, with its reason; ``record`` marks a tick as handled (manual runs
    never are). ``data`` goes into the ``ScheduleSkipped`` event."""

    schedule: Schedule
    kind: FiringKind
    fire_time: datetime
    reason: str
    detail: str
    record: bool = True
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Prepared:
    index: int
    tick: Tick
    task: NewTask
    key: str
    replaced: int | None


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
        """Fire ``schedule`` for ``fire_time``: :meth:`fire_many` of one."""
        tick = Tick(schedule=schedule, kind=kind, fire_time=fire_time, key=key)
        return (await self.fire_many([tick]))[0]

    async def fire_many(self, ticks: Sequence[Tick]) -> list[FiringResult]:
        """Fire ``ticks`` together; results in input order. Ticks are recorded as handled
        whether they fire or are skipped.

        Raises :class:`StoreUnavailable` when the queue cannot be reached; nothing of the
        batch was then enqueued, recorded or reported (the caller decides whether to
        retry: a retried tick's key deduplicates). Several ticks of one schedule are fired
        one after the other (each sees the previous one's task), the others together.
        """
        results: list[FiringResult | None] = [None] * len(ticks)
        rounds: list[list[tuple[int, Tick]]] = []
        seen: dict[str, int] = {}
        for index, tick in enumerate(ticks):
            occurrence = seen.get(tick.schedule.name, 0)
            seen[tick.schedule.name] = occurrence + 1
            if occurrence == len(rounds):
                rounds.append([])
            rounds[occurrence].append((index, tick))
        for batch in rounds:
            for index, result in await self._fire_round(batch):
                results[index] = result
        return [result for result in results if result is not None]

    async def _fire_round(self, batch: list[tuple[int, Tick]]) -> list[tuple[int, FiringResult]]:
        skips: list[tuple[int, Skip]] = []
        prepared: list[_Prepared] = []
        guarded = [
            tick.schedule.name
            for _, tick in batch
            if tick.schedule.overlap_policy is not OverlapPolicy.ALLOW
        ]
        # The runtime state is read fresh: a manual run elsewhere may have set a new task.
        last = await self._store.last_tasks(guarded) if guarded else {}
        for index, tick in batch:
            schedule = tick.schedule
            factory = self._factories.get(schedule.factory)
            if factory is None:
                skips.append(
                    (
                        index,
                        self._skip_of(
                            tick,
                            SkipReason.UNKNOWN_FACTORY,
                            f"no factory named {schedule.factory!r} is registered",
                        ),
                    )
                )
                continue
            replaced: int | None = None
            latest = last.get(schedule.name)
            if (
                schedule.overlap_policy is not OverlapPolicy.ALLOW
                and latest is not None
                and latest.state in _ACTIVE
            ):
                if schedule.overlap_policy is OverlapPolicy.FORBID:
                    blocked: tuple[str, int, str] | None = (
                        f"task {latest.task_id} of the previous firing is {latest.state.value}",
                        latest.task_id,
                        latest.state.value,
                    )
                else:
                    blocked, replaced = await self._replace(factory, latest.task_id)
                if blocked is not None:
                    skips.append(
                        (
                            index,
                            self._skip_of(
                                tick,
                                SkipReason.OVERLAP,
                                blocked[0],
                                taskId=blocked[1],
                                taskState=blocked[2],
                            ),
                        )
                    )
                    continue
            task_key = tick.key or tick_key(schedule.name, tick.fire_time)
            try:
                new_task = await factory.produce(
                    Firing(
                        schedule=schedule.name,
                        fire_time=tick.fire_time,
                        payload=dict(schedule.payload),
                        kind=tick.kind,
                        key=task_key,
                    )
                )
                if new_task.key != task_key or new_task.key_mode is not KeyMode.DEDUPE:
                    new_task = dataclasses.replace(new_task, key=task_key, key_mode=KeyMode.DEDUPE)
            except Exception as exc:
                logger.exception("schedule factory failed", extra={"schedule": schedule.name})
                skips.append(
                    (
                        index,
                        self._skip_of(
                            tick,
                            SkipReason.FACTORY_FAILED,
                            f"factory {schedule.factory!r} failed: {exc}",
                        ),
                    )
                )
                continue
            prepared.append(_Prepared(index, tick, new_task, task_key, replaced))

        enqueued = await self._enqueue(prepared, skips)
        fired: list[tuple[int, FiringResult]] = []
        records: list[FiringRecord] = []
        events: list[NewEvent] = []
        now = self._now()
        verbose = logger.isEnabledFor(logging.INFO)
        for item, result in enqueued:
            tick = item.tick
            name = tick.schedule.name
            deduplicated = result.outcome is EnqueueOutcome.DEDUPLICATED
            records.append(
                FiringRecord(
                    name=name,
                    fire_time=None if tick.kind is FiringKind.MANUAL else tick.fire_time,
                    task_id=result.task.id,
                )
            )
            fired.append(
                (
                    item.index,
                    FiringResult(
                        schedule=name,
                        kind=tick.kind,
                        fire_time=tick.fire_time,
                        task=result.task,
                        deduplicated=deduplicated,
                    ),
                )
            )
            if verbose:
                extra = {"schedule": name, "task_id": result.task.id, "key": item.key}
                if deduplicated:
                    logger.info("schedule tick was already enqueued", extra=extra)
                else:
                    logger.info("schedule fired", extra={**extra, "trigger": tick.kind.value})
            if deduplicated:
                continue
            data: dict[str, Any] = {"taskId": result.task.id, "key": item.key}
            if item.replaced is not None:
                data["replacedTaskId"] = item.replaced
            events.append(self._new_event(EventType.SCHEDULE_FIRED, tick, now, data))
        skipped = self._skipped(skips, records, events, now)
        await self._write(records, events)
        return fired + skipped

    async def _enqueue(
        self, prepared: list[_Prepared], skips: list[tuple[int, Skip]]
    ) -> list[tuple[_Prepared, EnqueueResult]]:
        """One ``enqueue_many``; should the queue refuse it for another reason than being
        unreachable, the tasks are enqueued one by one and a refused one is skipped."""
        if not prepared:
            return []
        try:
            results = await self._queue.enqueue_many([item.task for item in prepared])
            return list(zip(prepared, results, strict=True))
        except StoreUnavailable:
            raise
        except Exception as exc:
            logger.warning(
                "batched enqueue refused, enqueueing one by one", extra={"error": str(exc)}
            )
        enqueued: list[tuple[_Prepared, EnqueueResult]] = []
        for item in prepared:
            try:
                enqueued.append((item, await self._queue.enqueue(item.task)))
            except StoreUnavailable:
                raise
            except Exception as exc:
                logger.exception(
                    "schedule task refused", extra={"schedule": item.tick.schedule.name}
                )
                skips.append(
                    (
                        item.index,
                        self._skip_of(
                            item.tick,
                            SkipReason.FACTORY_FAILED,
                            f"the task of factory {item.tick.schedule.factory!r} was refused: "
                            f"{exc}",
                        ),
                    )
                )
        return enqueued

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
        """Record a skipped firing: :meth:`skip_many` of one."""
        one = Skip(
            schedule=schedule,
            kind=kind,
            fire_time=fire_time,
            reason=reason,
            detail=detail,
            record=record,
            data=data,
        )
        return (await self.skip_many([one]))[0]

    async def skip_many(self, skips: Sequence[Skip]) -> list[FiringResult]:
        """Record skipped firings: one ``ScheduleSkipped`` event each (one ``append_many``)
        and, for ticks (with ``record``), the ticks as handled (one ``record_firings``).
        Never raises for the store or the event store: a skip is reported as well as it can
        be."""
        records: list[FiringRecord] = []
        events: list[NewEvent] = []
        results = self._skipped(list(enumerate(skips)), records, events, self._now())
        await self._write(records, events)
        return [result for _, result in results]

    def _skip_of(self, tick: Tick, reason: str, detail: str, **data: Any) -> Skip:
        return Skip(
            schedule=tick.schedule,
            kind=tick.kind,
            fire_time=tick.fire_time,
            reason=reason,
            detail=detail,
            data=data,
        )

    def _skipped(
        self,
        skips: list[tuple[int, Skip]],
        records: list[FiringRecord],
        events: list[NewEvent],
        now: datetime,
    ) -> list[tuple[int, FiringResult]]:
        results: list[tuple[int, FiringResult]] = []
        for index, skip in skips:
            name = skip.schedule.name
            logger.info(
                "schedule skipped",
                extra={"schedule": name, "reason": skip.reason, "detail": skip.detail},
            )
            if skip.record and skip.kind is not FiringKind.MANUAL:
                records.append(FiringRecord(name=name, fire_time=skip.fire_time))
            tick = Tick(schedule=skip.schedule, kind=skip.kind, fire_time=skip.fire_time)
            data = {"reason": skip.reason, "detail": skip.detail, **skip.data}
            events.append(self._new_event(SCHEDULE_SKIPPED, tick, now, data))
            results.append(
                (
                    index,
                    FiringResult(
                        schedule=name,
                        kind=skip.kind,
                        fire_time=skip.fire_time,
                        skipped=skip.reason,
                        detail=skip.detail,
                    ),
                )
            )
        return results

    async def _write(self, records: list[FiringRecord], events: list[NewEvent]) -> None:
        """The batch's records and events, side by side; a failure of either is logged (the
        firings are enqueued already and must not be undone or repeated)."""
        await asyncio.gather(self._record(records), self._append(events))

    async def _record(self, records: list[FiringRecord]) -> None:
        if not records:
            return
        try:
            await self._store.record_firings(records)
        except StoreError as exc:
            logger.warning(
                "could not record schedule firings",
                extra={"count": len(records), "error": str(exc)},
            )

    async def _append(self, events: list[NewEvent]) -> None:
        if self._events is None or not events:
            return
        try:
            await self._events.append_many(events)
        except Exception as exc:  # an event lost must not undo a firing already enqueued
            logger.warning(
                "could not append schedule events",
                extra={"count": len(events), "error": str(exc)},
            )

    async def _replace(
        self, factory: Factory, task_id: int
    ) -> tuple[tuple[str, int, str] | None, int | None]:
        """``replace`` against the schedule's active latest task. Returns (why and which
        task blocks the firing, or ``None``; the id of a task cancelled to make room)."""
        task = await self._queue.get_task(task_id)
        if task is None or task.state not in _ACTIVE:
            return None, None
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
                task.id,
                task.state.value,
            ), None
        if not await factory.cancel_running(task):
            return (
                f"task {task.id} is running and could not be cancelled",
                task.id,
                task.state.value,
            ), None
        return None, task.id

    def _new_event(self, type: str, tick: Tick, now: datetime, data: dict[str, Any]) -> NewEvent:
        return NewEvent.schedule(
            type,
            schedule=tick.schedule.name,
            scheduledAt=_iso(tick.fire_time),
            firedAt=_iso(now),
            trigger=tick.kind.value,
            **data,
        )
