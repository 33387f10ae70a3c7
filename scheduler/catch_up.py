"""Catch-up: what becomes of the ticks missed while no scheduler led.

On becoming leader, each active schedule's ticks between its anchor (see
:mod:`scheduler.status`) and now were missed while nobody led. The latest of them fires
(keyed by its own time, so a tick the previous leader did enqueue is not enqueued twice)
when it lies within the grace, or, beyond it, when ``catch_up`` is ``latest`` (once, as a
``catch_up`` firing); with ``catch_up=none`` it is skipped. Older missed ticks are reported
by one ``misfire`` skip event. At most one firing per schedule, however long the outage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.errors import SpecError
from scheduler.factories import FiringKind
from scheduler.firing import Skip, SkipReason, Tick
from scheduler.status import missed_ticks
from store.schedules.models import CatchUp, Schedule, SchedulesState

__all__ = ["CatchUpPlan", "plan_catch_up"]


@dataclass(frozen=True, kw_only=True)
class CatchUpPlan:
    """The skips to report and the ticks to fire for the ticks missed while nobody led."""

    skips: list[Skip]
    firings: list[Tick]


def plan_catch_up(
    schedules: Iterable[Schedule], state: SchedulesState, now: datetime
) -> CatchUpPlan:
    """The catch-up of ``schedules`` (the active ones) at ``now``; see the module docstring."""
    skips: list[Skip] = []
    firings: list[Tick] = []
    for schedule in schedules:
        try:
            missed = missed_ticks(schedule, state, now)
        except SpecError:
            continue
        if missed is None:
            continue
        first, latest = missed
        grace = timedelta(seconds=schedule.misfire_grace_seconds)
        if first < latest:
            skips.append(
                Skip(
                    schedule=schedule,
                    kind=FiringKind.CATCH_UP,
                    fire_time=first,
                    reason=SkipReason.MISFIRE,
                    detail="ticks missed while no scheduler was running",
                    record=False,
                    data={"missedFrom": first.isoformat(), "missedUntil": latest.isoformat()},
                )
            )
        if now - latest <= grace:
            kind = FiringKind.TICK
        elif schedule.catch_up is CatchUp.LATEST:
            kind = FiringKind.CATCH_UP
        else:
            skips.append(
                Skip(
                    schedule=schedule,
                    kind=FiringKind.CATCH_UP,
                    fire_time=latest,
                    reason=SkipReason.MISFIRE,
                    detail="missed while no scheduler was running (catch_up=none)",
                )
            )
            continue
        firings.append(Tick(schedule=schedule, kind=kind, fire_time=latest))
    return CatchUpPlan(skips=skips, firings=firings)
