"""Argument checks shared by both backends of the schedule store."""

from __future__ import annotations

from datetime import datetime

from store.schedules.errors import InvalidSchedule
from store.schedules.models import Schedule


def check_schedule(schedule: object) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise InvalidSchedule("schedule", f"expected a Schedule, got {type(schedule).__name__}")
    return schedule


def check_page(limit: int, offset: int) -> None:
    for label, value in (("limit", limit), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidSchedule(label, f"must be a non-negative integer, got {value!r}")


def check_moment(moment: datetime | None) -> None:
    if moment is not None and moment.tzinfo is None:
        raise InvalidSchedule("fire_time", "must be timezone-aware")
