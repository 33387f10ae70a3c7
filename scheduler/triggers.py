"""APScheduler 3.11 trigger that fires on a Longshore :class:`~scheduler.spec.CronSpec`.

APScheduler's own ``CronTrigger`` numbers weekdays from Monday and ANDs day-of-month with
day-of-week, so raw crontab specs never reach it: the scheduler adds jobs with
``CronSpecTrigger(parse_spec(text), parse_timezone(zone))`` instead, and every fire time comes
from :func:`scheduler.spec.next_fire_time` (crontab(5) semantics, documented DST behaviour).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]

from scheduler.spec import CronSpec, next_fire_time, parse_spec, parse_timezone

__all__ = ["CronSpecTrigger"]

_MICROSECOND = timedelta(microseconds=1)


class CronSpecTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at the ticks of ``spec`` evaluated in ``timezone``; fire times are UTC.

    Follows the contract of APScheduler's ``CronTrigger``: with no previous fire time the first
    tick at or after ``now``; otherwise the first tick after the previous one (which may lie in
    the past, so APScheduler's misfire and coalescing rules apply), or at or after ``now`` when
    the previous fire time is ahead of the clock.
    """

    __slots__ = ("spec", "timezone")

    def __init__(self, spec: CronSpec, timezone: ZoneInfo) -> None:
        self.spec = spec
        self.timezone = timezone

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The next fire time (UTC-aware), or ``None`` if the spec has none left."""
        after = now - _MICROSECOND
        if previous_fire_time is not None:
            after = min(previous_fire_time, after)
        return next_fire_time(self.spec, after, self.timezone)

    def __getstate__(self) -> dict[str, object]:
        # Slots and no __dict__: spell the state out so persistent job stores can pickle it.
        return {"version": 1, "spec": self.spec.text, "timezone": self.timezone.key}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.spec = parse_spec(str(state["spec"]))
        self.timezone = parse_timezone(str(state["timezone"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSpecTrigger):
            return NotImplemented
        return self.spec == other.spec and self.timezone.key == other.timezone.key

    def __hash__(self) -> int:
        return hash((self.spec, self.timezone.key))

    def __str__(self) -> str:
        return f"cron[{self.spec.text!r}, {self.timezone.key}]"

    def __repr__(self) -> str:
        return f"<CronSpecTrigger (spec={self.spec.text!r}, timezone={self.timezone.key!r})>"
