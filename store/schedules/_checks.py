"""Argument checks shared by both backends of the schedule store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from store.schedules.errors import InvalidSchedule
from store.schedules.models import FiringRecord, Schedule


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


def merge_firings(records: Sequence[FiringRecord]) -> list[FiringRecord]:
    """One record per name, sorted by name (a stable lock order): the latest fire time and
    the last task id given, as :meth:`ScheduleStore.record_firings` combines them."""
    merged: dict[str, FiringRecord] = {}
    for record in records:
        if not isinstance(record, FiringRecord):
            raise InvalidSchedule("records", f"expected FiringRecord, got {type(record).__name__}")
        check_moment(record.fire_time)
        seen = merged.get(record.name)
        if seen is None:
            merged[record.name] = record
            continue
        times = [t for t in (seen.fire_time, record.fire_time) if t is not None]
        merged[record.name] = FiringRecord(
            name=record.name,
            fire_time=max(times) if times else None,
            task_id=record.task_id if record.task_id is not None else seen.task_id,
        )
    return [merged[name] for name in sorted(merged)]
