"""Request and response bodies of the ``/schedules`` routes (seed 003 shapes, camelCase).

Times are RFC 3339 strings beside a ``...Ms`` epoch-millisecond twin; a time that does not
exist (``nextRun`` of a paused schedule, ``scheduledAt`` of an event without one) is
``null`` in both, and the key is always present.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from admin.schemas import Schema, epoch_ms, rfc3339
from scheduler.factories import Factory
from scheduler.firing import FiringResult
from scheduler.status import ScheduleView
from store.events.models import Event
from store.schedules.models import MAX_MISFIRE_GRACE_SECONDS, CatchUp, OverlapPolicy

__all__ = [
    "FactoryBody",
    "FactoryList",
    "ScheduleBody",
    "ScheduleDeleted",
    "ScheduleEventBody",
    "ScheduleEventList",
    "ScheduleList",
    "ScheduleOne",
    "SchedulePauseRequest",
    "ScheduleRequest",
    "ScheduleRunResult",
    "SchedulesPaused",
]

# --- requests ---------------------------------------------------------------------------


class ScheduleRequest(Schema):
    """``POST /schedules``: create, or update the schedule of that name.

    Seed 003 clients send ``{"name", "spec", "durable"}``. A field left out keeps its stored
    value on update and takes the default on create (``timezone`` UTC, ``factory`` the
    name, ``payload`` {}, ``paused`` false, ``durable`` true, ``overlapPolicy`` allow,
    ``misfireGraceSeconds`` 5, ``catchUp`` none).
    """

    name: Annotated[str, Field(strict=True)]
    spec: Annotated[str, Field(strict=True)]
    timezone: Annotated[str | None, Field(strict=True)] = None
    factory: Annotated[str | None, Field(strict=True)] = None
    payload: dict[str, Any] | None = None
    paused: Annotated[bool | None, Field(strict=True)] = None
    durable: Annotated[bool | None, Field(strict=True)] = None
    overlap_policy: OverlapPolicy | None = None
    misfire_grace_seconds: Annotated[
        int | None, Field(ge=0, le=MAX_MISFIRE_GRACE_SECONDS, strict=True)
    ] = None
    catch_up: CatchUp | None = None


class SchedulePauseRequest(Schema):
    """``POST /schedules/{name}/pause`` and ``POST /schedules/pause``: ``true`` pauses,
    ``false`` resumes; an empty body pauses."""

    paused: Annotated[bool, Field(strict=True)] = True


# --- responses --------------------------------------------------------------------------


class ScheduleBody(Schema):
    name: str
    schedule: str
    """The spec, under seed 003's name."""
    spec: str
    timezone: str
    factory: str
    payload: dict[str, Any]
    paused: bool
    """The schedule's own flag; ``status`` is ``paused`` also while all are paused."""
    durable: bool
    overlap_policy: str
    misfire_grace_seconds: int
    catch_up: str
    status: str
    """``healthy`` | ``paused`` | ``lagging``."""
    next_run: str | None
    """The next tick that will fire; ``null`` while paused (itself or all)."""
    next_run_ms: int | None
    last_run: str | None
    """The latest tick of the spec before now (``null`` when the spec has none)."""
    last_run_ms: int | None
    last_task_id: str | None
    """The queue task of the latest firing (a tick or a manual run)."""
    revision: int
    created_at: str | None
    created_at_ms: int | None
    updated_at: str | None
    updated_at_ms: int | None

    @classmethod
    def of(cls, found: ScheduleView) -> ScheduleBody:
        schedule = found.schedule
        return cls(
            name=schedule.name,
            schedule=schedule.spec,
            spec=schedule.spec,
            timezone=schedule.timezone,
            factory=schedule.factory,
            payload=dict(schedule.payload),
            paused=schedule.paused,
            durable=schedule.durable,
            overlap_policy=schedule.overlap_policy.value,
            misfire_grace_seconds=schedule.misfire_grace_seconds,
            catch_up=schedule.catch_up.value,
            status=found.status.value,
            next_run=rfc3339(found.next_run),
            next_run_ms=epoch_ms(found.next_run),
            last_run=rfc3339(found.previous_run),
            last_run_ms=epoch_ms(found.previous_run),
            last_task_id=None if schedule.last_task_id is None else str(schedule.last_task_id),
            revision=schedule.revision,
            created_at=rfc3339(schedule.created_at),
            created_at_ms=epoch_ms(schedule.created_at),
            updated_at=rfc3339(schedule.updated_at),
            updated_at_ms=epoch_ms(schedule.updated_at),
        )


class ScheduleList(Schema):
    schedules: list[ScheduleBody]
    total: int
    limit: int
    offset: int


class ScheduleOne(Schema):
    schedule: ScheduleBody


class ScheduleDeleted(Schema):
    name: str
    deleted: bool


class SchedulesPaused(Schema):
    """The pause-all switch after ``POST /schedules/pause``."""

    paused: bool


class FactoryBody(Schema):
    name: str
    description: str

    @classmethod
    def of(cls, factory: Factory) -> FactoryBody:
        return cls(name=factory.name, description=factory.description)


class FactoryList(Schema):
    factories: list[FactoryBody]


class ScheduleRunResult(Schema):
    """What ``POST /schedules/{name}/run`` did: ``status`` ``enqueued`` (``taskId`` and
    ``key`` set) or ``skipped`` (``reason`` and ``detail`` say why, e.g. ``overlap``)."""

    schedule: str
    status: str
    enqueued: bool
    task_id: str | None
    key: str | None
    deduplicated: bool
    reason: str | None
    detail: str
    requested_at: str | None
    requested_at_ms: int | None

    @classmethod
    def of(cls, result: FiringResult) -> ScheduleRunResult:
        task = result.task
        return cls(
            schedule=result.schedule,
            status="enqueued" if task is not None else "skipped",
            enqueued=task is not None,
            task_id=None if task is None else str(task.id),
            key=None if task is None else task.key,
            deduplicated=result.deduplicated,
            reason=result.skipped,
            detail=result.detail,
            requested_at=rfc3339(result.fire_time),
            requested_at_ms=epoch_ms(result.fire_time),
        )


class ScheduleEventBody(Schema):
    """One schedule event (newest first in lists). ``scheduledAt`` is the tick (or the
    moment a manual run was asked for), ``actualAt`` when it was fired or skipped, ``at``
    when the event was stored; ``reason`` and ``detail`` are set for skips. ``data`` holds
    everything the event carries."""

    id: int
    type: str
    schedule: str
    trigger: str | None
    task_id: str | None
    key: str | None
    reason: str | None
    detail: str | None
    scheduled_at: str | None
    scheduled_at_ms: int | None
    actual_at: str | None
    actual_at_ms: int | None
    at: str | None
    at_ms: int | None
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> ScheduleEventBody:
        data = dict(event.data)
        scheduled = _moment(data.get("scheduledAt"))
        actual = _moment(data.get("firedAt"))
        task_id = data.get("taskId")
        return cls(
            id=event.id,
            type=event.type,
            schedule=event.key,
            trigger=_text(data, "trigger"),
            task_id=None if task_id is None else str(task_id),
            key=_text(data, "key"),
            reason=_text(data, "reason"),
            detail=_text(data, "detail"),
            scheduled_at=rfc3339(scheduled),
            scheduled_at_ms=epoch_ms(scheduled),
            actual_at=rfc3339(actual),
            actual_at_ms=epoch_ms(actual),
            at=rfc3339(event.at),
            at_ms=event.at_ms,
            data=data,
        )


class ScheduleEventList(Schema):
    events: list[ScheduleEventBody]


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return None if value is None else str(value)


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
