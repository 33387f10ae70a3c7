"""Fire instants of a :class:`~scheduler.spec.grammar.CronSpec` in an IANA time zone.

The daylight-saving behaviour is that of docs/schedules.md:

- Cron specs are matched against wall-clock time. A wall time skipped by a daylight-saving
  change fires once, at the first instant after the gap; a repeated wall time fires once, at
  its first occurrence.
- ``@every <duration>`` fires in absolute time at whole multiples of the duration since the
  Unix epoch, whatever the time zone.

Fire instants are returned as UTC-aware datetimes: comparing two datetimes that share one
``ZoneInfo`` ignores ``fold``, so local times in a repeated hour would compare wrongly.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduler.spec.grammar import CronSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)
# Any pattern of months, days of month and weekdays repeats within the 400-year Gregorian
# cycle, so a search that has gone further than that has nothing left to find.
_SEARCH_YEARS = 400


def next_fire_time(spec: CronSpec, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The first fire instant strictly after ``after`` (aware), as a UTC datetime.

    Cron specs are evaluated in ``tz``; ``@every`` ignores it. ``None`` only when the next
    fire time would lie beyond year 9999.
    """
    after = _as_utc(after, "after")
    if spec.every is not None:
        steps = (after - _EPOCH) // spec.every + 1
        return _epoch_plus(steps * spec.every)
    local = after.astimezone(tz)
    start = local.replace(tzinfo=None, microsecond=0) + _SECOND
    repeat_end = _end_of_second_pass(local, tz)
    if repeat_end is not None:
        # In the second pass of a repeated hour every wall time up to the end of the repeat
        # already fired during the first pass.
        start = max(start, repeat_end)
    while True:
        wall = _next_wall(spec, start)
        if wall is None:
            return None
        instant = _instant_of(wall, tz)
        if instant > after:
            return instant
        start = wall + _SECOND


def previous_fire_time(spec: CronSpec, before: datetime, tz: ZoneInfo) -> datetime | None:
    """The last fire instant strictly before ``before`` (aware), as a UTC datetime.

    The mirror image of :func:`next_fire_time`; ``None`` when there is none after year 1.
    """
    before = _as_utc(before, "before")
    if spec.every is not None:
        steps = (before - _EPOCH - _MICROSECOND) // spec.every
        return _epoch_plus(steps * spec.every)
    local = before.astimezone(tz)
    start = local.replace(tzinfo=None, microsecond=0)
    repeat_end = _end_of_second_pass(local, tz)
    if repeat_end is not None:
        # Every wall time of the repeated hour first occurred before ``before``.
        start = max(start, repeat_end - _SECOND)
    while True:
        wall = _previous_wall(spec, start)
        if wall is None:
            return None
        instant = _instant_of(wall, tz)
        if instant < before:
            return instant
        start = wall - _SECOND


def _as_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return moment.astimezone(UTC)


def _epoch_plus(delta: timedelta) -> datetime | None:
    try:
        return _EPOCH + delta
    except OverflowError:
        return None


def _epoch_seconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _SECOND


def _wall_at(seconds: int, tz: ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(seconds=seconds)).astimezone(tz).replace(tzinfo=None)


def _instant_of(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant a wall-clock tick fires: its first occurrence, or the end of its gap."""
    # fold=0 picks the first of two occurrences of a repeated wall time.
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # The wall time falls in a gap: fold=0 and fold=1 read it with the offsets from either
    # side of the transition, so the transition lies between the two readings.
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = sorted((_epoch_seconds(first), _epoch_seconds(other)))
    gap_end = _first_second(low, high, lambda second: _wall_at(second, tz) > wall)
    return _EPOCH + timedelta(seconds=gap_end)


def _end_of_second_pass(local: datetime, tz: ZoneInfo) -> datetime | None:
    """When ``local`` is in the second pass of a repeated hour, the wall time it ends at."""
    if not local.fold:
        return None
    later = local.utcoffset()
    earlier = local.replace(fold=0).utcoffset()
    if later is None or earlier is None or earlier <= later:
        return None
    repeat = (earlier - later) // _SECOND
    now = _epoch_seconds(local)
    transition = _first_second(now - repeat, now, lambda second: _offset_at(second, tz) == later)
    return _wall_at(transition, tz) + timedelta(seconds=repeat)


def _offset_at(seconds: int, tz: ZoneInfo) -> timedelta | None:
    return (_EPOCH + timedelta(seconds=seconds)).astimezone(tz).utcoffset()


def _first_second(low: int, high: int, reached: Callable[[int], bool]) -> int:
    """The first second in (low, high] where ``reached`` holds (it must hold at ``high``)."""
    while high - low > 1:
        middle = (low + high) // 2
        if reached(middle):
            high = middle
        else:
            low = middle
    return high


def _next_wall(spec: CronSpec, start: datetime) -> datetime | None:
    """The first matching wall-clock time at or after ``start`` (naive, whole seconds)."""
    limit = start.year + _SEARCH_YEARS
    moment = start
    try:
        while moment.year <= limit:
            if moment.month not in spec.months:
                index = bisect_right(spec.months, moment.month)
                if index < len(spec.months):
                    moment = datetime(moment.year, spec.months[index], 1)
                else:
                    moment = datetime(moment.year + 1, spec.months[0], 1)
                continue
            if not spec.matches_day(moment.date()):
                moment = datetime.combine(moment.date() + _DAY, time())
                continue
            index = bisect_left(spec.hours, moment.hour)
            if index == len(spec.hours):
                moment = datetime.combine(moment.date() + _DAY, time())
                continue
            if spec.hours[index] != moment.hour:
                moment = moment.replace(hour=spec.hours[index], minute=0, second=0)
            index = bisect_left(spec.minutes, moment.minute)
            if index == len(spec.minutes):
                moment = moment.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if spec.minutes[index] != moment.minute:
                moment = moment.replace(minute=spec.minutes[index], second=0)
            index = bisect_left(spec.seconds, moment.second)
            if index == len(spec.seconds):
                moment = moment.replace(second=0) + timedelta(minutes=1)
                continue
            return moment.replace(second=spec.seconds[index])
    except (OverflowError, ValueError):
        # Walked past year 9999.
        return None
    return None


def _previous_wall(spec: CronSpec, start: datetime) -> datetime | None:
    """The last matching wall-clock time at or before ``start`` (naive, whole seconds)."""
    limit = start.year - _SEARCH_YEARS
    end_of_day = time(23, 59, 59)
    moment = start
    try:
        while moment.year >= limit:
            if moment.month not in spec.months:
                index = bisect_left(spec.months, moment.month) - 1
                if index >= 0:
                    month_start = date(moment.year, spec.months[index], 1)
                else:
                    month_start = date(moment.year - 1, spec.months[-1], 1)
                month_end = (month_start + timedelta(days=31)).replace(day=1) - _DAY
                moment = datetime.combine(month_end, end_of_day)
                continue
            if not spec.matches_day(moment.date()):
                moment = datetime.combine(moment.date() - _DAY, end_of_day)
                continue
            index = bisect_right(spec.hours, moment.hour) - 1
            if index < 0:
                moment = datetime.combine(moment.date() - _DAY, end_of_day)
                continue
            if spec.hours[index] != moment.hour:
                moment = moment.replace(hour=spec.hours[index], minute=59, second=59)
            index = bisect_right(spec.minutes, moment.minute) - 1
            if index < 0:
                moment = moment.replace(minute=0, second=0) - _SECOND
                continue
            if spec.minutes[index] != moment.minute:
                moment = moment.replace(minute=spec.minutes[index], second=59)
            index = bisect_right(spec.seconds, moment.second) - 1
            if index < 0:
                moment = moment.replace(second=0) - _SECOND
                continue
            return moment.replace(second=spec.seconds[index])
    except (OverflowError, ValueError):
        # Walked back past year 1.
        return None
    return None
