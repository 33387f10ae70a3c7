"""Missed firings: a schedule's firings that were not enqueued within their grace.

A firing is **missed** when the leader did not enqueue it within the schedule's
``misfire_grace_seconds`` for a reason of its own making: no scheduler led at the time
(found by the catch-up of the next leader, :mod:`scheduler.catch_up`), the tick reached the
queue too late (an overloaded leader), or the store was unreachable until the grace ran out.
Paused schedules and firings skipped by policy (``overlap``) or a missing factory are not
missed: they were decided, not lost. A firing that the catch-up enqueues late
(``catch_up=latest``) is missed too: it did not run on time.

Each missed firing is one ``ScheduleMissed`` event (stream ``schedules``, key = schedule;
``scheduledAt``, ``detectedAt``, ``graceSeconds``, ``reason``, ``spec``) and one call of the
``on_missed`` handler's list (the service enqueues the ``missed`` notifications there). A range of
ticks missed during a long outage is enumerated up to :data:`MAX_PER_RANGE` ticks per
schedule; past that one more event carries ``omitted`` (how many more ticks were missed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from scheduler.errors import SpecError
from scheduler.factories import FiringKind
from scheduler.firing.models import Skip, SkipReason, Tick
from scheduler.spec import next_fire_time, parse_spec, parse_timezone
from store.events.models import EventType, NewEvent
from store.events.protocol import EventStore
from store.schedules.models import Schedule

__all__ = ["MissedFiring", "MissedHandler", "MissedReporter", "missed_of_skips"]

logger = logging.getLogger(__name__)

MAX_PER_RANGE = 100
MISSED_REASONS = frozenset({SkipReason.MISFIRE, SkipReason.STORE_UNAVAILABLE})


@dataclass(frozen=True, kw_only=True)
class MissedFiring:
    """One firing of ``schedule`` at ``scheduled_at`` that was not enqueued in time."""

    schedule: Schedule
    scheduled_at: datetime
    reason: str
    omitted: int = 0
    """More ticks of the same range missed beyond :data:`MAX_PER_RANGE` (not enumerated)."""


MissedHandler = Callable[[list[MissedFiring]], Awaitable[object]]
"""Told of the missed firings found together (one batch of skips, one catch-up)."""


def missed_of_skips(skips: Iterable[Skip]) -> list[MissedFiring]:
    """The missed firings among ``skips`` (a range skip of the catch-up is enumerated)."""
    found: list[MissedFiring] = []
    for skip in skips:
        if skip.reason not in MISSED_REASONS or skip.kind is FiringKind.MANUAL:
            continue
        until = skip.data.get("missedUntil")
        if isinstance(until, str):
            found.extend(_range(skip, datetime.fromisoformat(until)))
        else:
            firing = MissedFiring(
                schedule=skip.schedule, scheduled_at=skip.fire_time, reason=skip.reason
            )
            found.append(firing)
    return found


def missed_of_late_firings(ticks: Iterable[Tick]) -> list[MissedFiring]:
    """The catch-up firings enqueued past their grace (``catch_up=latest``)."""
    return [
        MissedFiring(schedule=tick.schedule, scheduled_at=tick.fire_time, reason="catch_up")
        for tick in ticks
        if tick.kind is FiringKind.CATCH_UP
    ]


def _range(skip: Skip, until: datetime) -> list[MissedFiring]:
    """Every tick from the skip's ``fire_time`` up to (not including) ``until``."""
    schedule = skip.schedule
    try:
        spec, zone = parse_spec(schedule.spec), parse_timezone(schedule.timezone)
    except SpecError:
        return []
    found: list[MissedFiring] = []
    moment: datetime | None = skip.fire_time
    while moment is not None and moment < until:
        if len(found) == MAX_PER_RANGE:
            omitted = 0
            while moment is not None and moment < until and omitted < 1_000_000:
                omitted += 1
                moment = next_fire_time(spec, moment, zone)
            last = found[-1]
            found[-1] = MissedFiring(
                schedule=schedule,
                scheduled_at=last.scheduled_at,
                reason=last.reason,
                omitted=omitted,
            )
            break
        found.append(MissedFiring(schedule=schedule, scheduled_at=moment, reason=skip.reason))
        moment = next_fire_time(spec, moment, zone)
    return found


class MissedReporter:
    """Writes the ``ScheduleMissed`` events and calls the handler (see the module docstring).
    Never raises: a lost event or a failing handler is logged."""

    def __init__(
        self,
        events: EventStore | None,
        on_missed: MissedHandler | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._events = events
        self._on_missed = on_missed
        self._now = clock

    def events_of(self, skips: Sequence[Skip], now: datetime) -> list[NewEvent]:
        """The ``ScheduleMissed`` events of the missed firings among ``skips`` (the firer
        appends them with the skips' own events)."""
        missed = missed_of_skips(skips)
        self._log(missed)
        return [_event(firing, now) for firing in missed]

    async def after(self, skips: Sequence[Skip]) -> None:
        """Tell the handler of the missed firings among ``skips``."""
        await self._tell(missed_of_skips(skips))

    async def report(self, missed: list[MissedFiring]) -> None:
        """Append the events of ``missed`` and tell the handler."""
        if not missed:
            return
        now = self._now()
        self._log(missed)
        if self._events is not None:
            try:
                await self._events.append_many([_event(firing, now) for firing in missed])
            except Exception as exc:
                logger.warning("could not append missed firings", extra={"error": str(exc)})
        await self._tell(missed)

    def _log(self, missed: list[MissedFiring]) -> None:
        for firing in missed:
            logger.warning(
                "schedule firing missed",
                extra={
                    "schedule": firing.schedule.name,
                    "scheduled_at": firing.scheduled_at.isoformat(),
                    "reason": firing.reason,
                },
            )

    async def _tell(self, missed: list[MissedFiring]) -> None:
        if self._on_missed is None or not missed:
            return
        try:
            await self._on_missed(missed)
        except Exception as exc:
            logger.warning(
                "could not notify missed firings",
                extra={"count": len(missed), "error": str(exc)},
            )


def _event(firing: MissedFiring, now: datetime) -> NewEvent:
    data: dict[str, object] = {
        "scheduledAt": _iso(firing.scheduled_at),
        "detectedAt": _iso(now),
        "graceSeconds": firing.schedule.misfire_grace_seconds,
        "reason": firing.reason,
        "spec": firing.schedule.spec,
        "factory": firing.schedule.factory,
    }
    if firing.omitted:
        data["omitted"] = firing.omitted
    return NewEvent.schedule(EventType.SCHEDULE_MISSED, schedule=firing.schedule.name, **data)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
