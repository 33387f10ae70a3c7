"""When a schedule fires next, what it missed, and how it is doing: pure functions of a
stored :class:`~store.schedules.models.Schedule`, the pause-all state and the time.

The *anchor* of a schedule is the latest of its creation, its last resume (its own or
resume-all) and its last handled tick: every tick after the anchor is still due, every tick
before it has been dealt with (fired, skipped, or fell while the schedule was paused). So a
resumed schedule continues from the resume, never with a burst of the ticks it slept through.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scheduler.spec import next_fire_time, parse_spec, parse_timezone, previous_fire_time
from store.schedules.models import Schedule, SchedulesState

__all__ = [
    "DEFAULT_LAG_THRESHOLD",
    "ScheduleStatus",
    "ScheduleView",
    "anchor",
    "due_tick",
    "is_active",
    "manual_key",
    "missed_ticks",
    "tick_key",
    "view",
]

DEFAULT_LAG_THRESHOLD = timedelta(seconds=60)
"""How long past its due tick a schedule may go without a firing before it is ``lagging``."""


class ScheduleStatus(enum.StrEnum):
    HEALTHY = "healthy"
    PAUSED = "paused"
    LAGGING = "lagging"


@dataclass(frozen=True, kw_only=True)
class ScheduleView:
    """A schedule as the admin API shows it: the stored record plus derived times.

    ``next_run`` is the next tick that will fire (``None`` while paused); ``previous_run``
    the latest tick of the spec before now; ``status`` is ``paused`` (itself or all),
    ``lagging`` (a tick is overdue by more than the threshold: no leader is running, or it
    cannot keep up) or ``healthy``. ``last_fired`` is when the schedule last enqueued its
    task (a tick or a manual run; skips do not count), when known (see
    :meth:`~scheduler.manager.ScheduleManager.get`).
    """

    schedule: Schedule
    status: ScheduleStatus
    next_run: datetime | None
    previous_run: datetime | None
    last_fired: datetime | None = None


def tick_key(name: str, fire_time: datetime) -> str:
    """The queue key of a tick: ``schedule:<name>:<fire time, ISO 8601 UTC>``."""
    moment = fire_time.astimezone(UTC)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return f"schedule:{name}:{text.replace('+00:00', 'Z')}"


def manual_key(name: str, token: str) -> str:
    """The queue key of a manual run: ``schedule:<name>:manual:<token>``."""
    return f"schedule:{name}:manual:{token}"


def is_active(schedule: Schedule, state: SchedulesState) -> bool:
    return not schedule.paused and not state.all_paused


def anchor(schedule: Schedule, state: SchedulesState) -> datetime | None:
    """See the module docstring; ``None`` only for a schedule never saved."""
    moments = [
        m
        for m in (
            schedule.created_at,
            schedule.resumed_at,
            state.all_resumed_at,
            schedule.last_fire_time,
        )
        if m is not None
    ]
    return max(moments) if moments else None


def due_tick(schedule: Schedule, state: SchedulesState) -> datetime | None:
    """The first tick after the anchor: the one the scheduler owes next."""
    start = anchor(schedule, state)
    if start is None:
        return None
    return next_fire_time(parse_spec(schedule.spec), start, parse_timezone(schedule.timezone))


def missed_ticks(
    schedule: Schedule, state: SchedulesState, now: datetime
) -> tuple[datetime, datetime] | None:
    """The first and the latest tick after the anchor and before ``now``, or ``None``."""
    start = anchor(schedule, state)
    if start is None:
        return None
    spec, zone = parse_spec(schedule.spec), parse_timezone(schedule.timezone)
    latest = previous_fire_time(spec, now, zone)
    if latest is None or latest <= start:
        return None
    first = next_fire_time(spec, start, zone)
    assert first is not None
    return first, latest


def view(
    schedule: Schedule,
    state: SchedulesState,
    now: datetime,
    *,
    lag_threshold: timedelta = DEFAULT_LAG_THRESHOLD,
) -> ScheduleView:
    """Derive next and previous run and the status (see :class:`ScheduleView`)."""
    spec, zone = parse_spec(schedule.spec), parse_timezone(schedule.timezone)
    previous_run = previous_fire_time(spec, now, zone)
    if not is_active(schedule, state):
        return ScheduleView(
            schedule=schedule,
            status=ScheduleStatus.PAUSED,
            next_run=None,
            previous_run=previous_run,
        )
    due = due_tick(schedule, state)
    lagging = due is not None and now - due > lag_threshold
    return ScheduleView(
        schedule=schedule,
        status=ScheduleStatus.LAGGING if lagging else ScheduleStatus.HEALTHY,
        next_run=next_fire_time(spec, now - timedelta(microseconds=1), zone),
        previous_run=previous_run,
    )
