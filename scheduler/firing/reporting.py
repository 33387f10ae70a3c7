"""What a batch of firings leaves behind besides its tasks: the ticks recorded as handled
(one ``record_firings``) and one event per firing (one ``append_many``), written side by
side.

Events (stream ``schedules``, key = schedule name) carry ``scheduledAt`` and ``firedAt``
(ISO 8601 UTC), ``trigger`` (``tick`` | ``catch_up`` | ``manual``) and the ``spec`` the
schedule had:

- ``ScheduleFired`` with ``taskId``, ``key``, the task's ``queue`` and, for ``replace``,
  ``replacedTaskId``;
- ``ScheduleSkipped`` with ``reason``: ``paused``, ``overlap`` (``taskId``, ``taskState``),
  ``misfire`` (``missedFrom``/``missedUntil`` for a range), ``unknown_factory``,
  ``factory_failed`` or ``store_unavailable``, and a human ``detail``. The event store has
  no ``ScheduleSkipped`` member in ``EventType``; it accepts any past-tense name.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from scheduler.factories import FiringKind
from scheduler.firing.models import SCHEDULE_SKIPPED, FiringResult, Skip, Tick
from store.errors import StoreError
from store.events.models import NewEvent
from store.events.protocol import EventStore
from store.schedules.models import FiringRecord
from store.schedules.protocol import ScheduleStore

logger = logging.getLogger(__name__)


def schedule_event(type: str, tick: Tick, now: datetime, data: dict[str, Any]) -> NewEvent:
    """The event ``type`` of ``tick``, fired (or skipped) at ``now``."""
    return NewEvent.schedule(
        type,
        schedule=tick.schedule.name,
        scheduledAt=_iso(tick.fire_time),
        firedAt=_iso(now),
        trigger=tick.kind.value,
        spec=tick.schedule.spec,
        **data,
    )


def report_skips(
    skips: list[tuple[int, Skip]],
    records: list[FiringRecord],
    events: list[NewEvent],
    now: datetime,
) -> list[tuple[int, FiringResult]]:
    """The results of ``skips`` (by their index); their records and events are added to
    ``records`` and ``events`` for :func:`write_report`."""
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
        events.append(schedule_event(SCHEDULE_SKIPPED, tick, now, data))
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


async def write_report(
    store: ScheduleStore,
    event_store: EventStore | None,
    records: list[FiringRecord],
    events: list[NewEvent],
) -> None:
    """The batch's records and events, side by side; a failure of either is logged (the
    firings are enqueued already and must not be undone or repeated)."""
    await asyncio.gather(_record(store, records), _append(event_store, events))


async def _record(store: ScheduleStore, records: list[FiringRecord]) -> None:
    if not records:
        return
    try:
        await store.record_firings(records)
    except StoreError as exc:
        logger.warning(
            "could not record schedule firings",
            extra={"count": len(records), "error": str(exc)},
        )


async def _append(event_store: EventStore | None, events: list[NewEvent]) -> None:
    if event_store is None or not events:
        return
    try:
        await event_store.append_many(events)
    except Exception as exc:  # an event lost must not undo a firing already enqueued
        logger.warning(
            "could not append schedule events",
            extra={"count": len(events), "error": str(exc)},
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
