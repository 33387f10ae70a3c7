"""Request and response bodies of the ``/schedules`` routes (seed 003 shapes, camelCase).

Times are RFC 3339 strings beside a ``...Ms`` epoch-millisecond twin. Seed 003's
``nextRun`` / ``lastRun`` are never null (its clients call string methods on them): a time
that does not exist (``nextRun`` of a paused schedule, ``lastRun`` of one that never fired)
is ``""`` with ``0`` as its twin, as seed 003 clients read them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from admin.schemas import Schema, epoch_ms, rfc3339
from scheduler.factories import Factory
from scheduler.firing import FiringResult
from scheduler.status import ScheduleStatus, ScheduleView
from store.jobs.models import ScheduleHealth
from store.schedules.models import MAX_MISFIRE_GRACE_SECONDS, CatchUp, OverlapPolicy

__all__ = [
    "FactoryBody",
    "FactoryList",
    "ScheduleBody",
    "ScheduleDeleted",
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
    name, ``payload`` {}, ``paused`` false, ``overlapPolicy`` allow,
    ``misfireGraceSeconds`` 5, ``catchUp`` none). ``durable`` is accepted and ignored:
    every schedule is persisted.
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
    """Whether it is paused (``status`` is then ``paused``)."""
    durable: bool
    """Always ``true``: every schedule is persisted."""
    overlap_policy: str
    misfire_grace_seconds: int
    catch_up: str
    status: str
    """``healthy`` | ``paused`` | ``lagging``."""
    next_run: str
    """The next tick that will fire; ``""`` (and ``nextRunMs`` 0) while paused."""
    next_run_ms: int
    last_run: str
    """When it last fired (a tick or a manual run; skipped ticks do not count); ``""``
    (and ``lastRunMs`` 0) when it never did."""
    last_run_ms: int
    previous_tick: str
    """The latest tick of the spec before now, fired or not (``""`` when it has none)."""
    previous_tick_ms: int
    last_task_id: str | None
    """The queue task of the latest firing (a tick or a manual run)."""
    revision: int
    created_at: str | None
    created_at_ms: int | None
    updated_at: str | None
    updated_at_ms: int | None
    failing: bool = False
    """Whether the runs it starts keep failing (two or more failed since the last success).
    Beside ``status``, whose vocabulary seed 003 clients know."""
    failures_in_a_row: int = 0
    """Its runs that failed since its last successful one."""
    last_success_at_ms: int = -1
    """When its last successful run finished (``-1``: none did, or none is kept)."""

    @classmethod
    def of(cls, found: ScheduleView, health: ScheduleHealth | None = None) -> ScheduleBody:
        schedule = found.schedule
        return cls(
            failing=health is not None and health.failing,
            failures_in_a_row=0 if health is None else health.failures_since_success,
            last_success_at_ms=-1
            if health is None or health.last_success_at is None
            else epoch_ms(health.last_success_at) or -1,
            name=schedule.name,
            schedule=schedule.spec,
            spec=schedule.spec,
            timezone=schedule.timezone,
            factory=schedule.factory,
            payload=dict(schedule.payload),
            paused=found.status is ScheduleStatus.PAUSED,
            durable=True,
            overlap_policy=schedule.overlap_policy.value,
            misfire_grace_seconds=schedule.misfire_grace_seconds,
            catch_up=schedule.catch_up.value,
            status=found.status.value,
            next_run=rfc3339(found.next_run) or "",
            next_run_ms=epoch_ms(found.next_run) or 0,
            last_run=rfc3339(found.last_fired) or "",
            last_run_ms=epoch_ms(found.last_fired) or 0,
            previous_tick=rfc3339(found.previous_run) or "",
            previous_tick_ms=epoch_ms(found.previous_run) or 0,
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
    """What ``POST /schedules/pause`` did: every schedule is now ``paused`` (or resumed);
    ``updated`` of them were not in that state before."""

    paused: bool
    updated: int


class FactoryBody(Schema):
    name: str
    description: str
    durable: bool
    """Always ``true``: the schedules of every factory are persisted."""

    @classmethod
    def of(cls, factory: Factory) -> FactoryBody:
        return cls(name=factory.name, description=factory.description, durable=True)


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
