"""Firings of schedules: the overlap policy, the factory, the keyed enqueue, the record and
the event. Shared by clock ticks, catch-up and manual runs.

Firings are made in batches (:meth:`Firer.fire_many`, :meth:`Firer.skip_many`): the ticks
of one batch cost one ``last_tasks`` read (only for ``forbid``/``replace`` schedules), one
``enqueue_many`` (one transaction), one ``record_firings`` and one ``append_many`` of their
events (see :mod:`scheduler.firing.reporting`), whatever their number. :meth:`Firer.fire`
and :meth:`Firer.skip` are batches of one.

A firing only enqueues. Its key (``schedule:<name>:<fire time>``, or
``schedule:<name>:manual:<uuid>``) uses ``dedupe``, so a tick enqueued twice (two instances
that both believe they lead, for a moment) yields one task; the second attempt sees
``deduplicated`` and writes no event.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from scheduler.factories import FactoryRegistry, Firing, FiringKind
from scheduler.firing.models import FiringResult, Skip, SkipReason, Tick
from scheduler.firing.overlap import Blocked, check_overlap
from scheduler.firing.reporting import report_skips, schedule_event, write_report
from scheduler.status import tick_key
from store.errors import StoreUnavailable
from store.events.models import EventType, NewEvent
from store.events.protocol import EventStore
from store.queue.models import EnqueueOutcome, EnqueueResult, KeyMode, NewTask
from store.queue.protocol import TaskQueue
from store.schedules.models import FiringRecord, OverlapPolicy, Schedule
from store.schedules.protocol import ScheduleStore

logger = logging.getLogger(__name__)


@dataclass
class _Prepared:
    index: int
    tick: Tick
    task: NewTask
    key: str
    replaced: int | None


class SkipListener(Protocol):
    """Told of every batch of skips :meth:`Firer.skip_many` reports."""

    def events_of(self, skips: Sequence[Skip], now: datetime) -> list[NewEvent]:
        """More events to append with the batch's (in the same ``append_many``)."""
        ...

    async def after(self, skips: Sequence[Skip]) -> None:
        """Called once the batch's records and events are written; never raises."""
        ...


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
        skip_listener: SkipListener | None = None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._factories = factories
        self._events = events
        self._now = clock
        self._skip_listener = skip_listener
        """Told of every batch of skips (the missed-firing check)."""

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
                        Skip.of(
                            tick,
                            SkipReason.UNKNOWN_FACTORY,
                            f"no factory named {schedule.factory!r} is registered",
                        ),
                    )
                )
                continue
            overlap = await check_overlap(
                self._queue, schedule.overlap_policy, factory, last.get(schedule.name)
            )
            if isinstance(overlap, Blocked):
                skips.append(
                    (
                        index,
                        Skip.of(
                            tick,
                            SkipReason.OVERLAP,
                            overlap.detail,
                            taskId=overlap.task_id,
                            taskState=overlap.task_state,
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
                        Skip.of(
                            tick,
                            SkipReason.FACTORY_FAILED,
                            f"factory {schedule.factory!r} failed: {exc}",
                        ),
                    )
                )
                continue
            prepared.append(_Prepared(index, tick, new_task, task_key, overlap.replaced))

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
            data: dict[str, Any] = {
                "taskId": result.task.id,
                "key": item.key,
                "queue": result.task.queue,
            }
            if item.replaced is not None:
                data["replacedTaskId"] = item.replaced
            events.append(schedule_event(EventType.SCHEDULE_FIRED, tick, now, data))
        skipped = report_skips(skips, records, events, now)
        await write_report(self._store, self._events, records, events)
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
                        Skip.of(
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
        now = self._now()
        results = report_skips(list(enumerate(skips)), records, events, now)
        listener = self._skip_listener
        if listener is not None:
            events.extend(listener.events_of(skips, now))
        await write_report(self._store, self._events, records, events)
        if listener is not None:
            await listener.after(skips)
        return [result for _, result in results]
