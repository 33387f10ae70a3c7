"""The spec grammar: crontab(5) with an optional seconds field, @-macros and ``@every``.

:func:`parse_spec` turns text into a frozen :class:`CronSpec`, exactly as docs/schedules.md
describes: fields are matched as cronie (Vixie cron) matches them, including its rule for the
two day fields (OR-ed when both are restricted; a field whose text *starts with* ``*``, ``*``
and ``*/2`` alike, counts as unrestricted, so the fields are AND-ed), and a spec that can
never fire (``0 0 31 2 *``) is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduler.errors import SpecError

MAX_SPEC_LENGTH = 256
MIN_EVERY = timedelta(seconds=1)
MAX_EVERY = timedelta(days=366)

# Days in each month of a leap year: the most a day-of-month can reach in that month.
_LONGEST_MONTH = dict(enumerate((31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), start=1))

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_DOW_NAMES = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NUMBER = re.compile(r"[0-9]{1,9}", re.ASCII)
_NAME = re.compile(r"[A-Za-z]+", re.ASCII)
_DURATION = re.compile(
    r"(?:(?P<d>[0-9]{1,9})d)?(?:(?P<h>[0-9]{1,9})h)?(?:(?P<m>[0-9]{1,9})m)?(?:(?P<s>[0-9]{1,9})s)?",
    re.ASCII,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int] | None = None


_SECOND_FIELD = _Field(name="second", low=0, high=59)
_MINUTE_FIELD = _Field(name="minute", low=0, high=59)
_HOUR_FIELD = _Field(name="hour", low=0, high=23)
_DOM_FIELD = _Field(name="day-of-month", low=1, high=31)
_MONTH_FIELD = _Field(name="month", low=1, high=12, names=_MONTH_NAMES)
# 0 and 7 are both Sunday, as in crontab(5); 7 is folded into 0 after parsing.
_DOW_FIELD = _Field(name="day-of-week", low=0, high=7, names=_DOW_NAMES)


@dataclass(frozen=True, kw_only=True)
class CronSpec:
    """A parsed schedule spec; build it with :func:`parse_spec`.

    For a cron spec the tuples hold the sorted values each field allows (``days_of_week``
    counts from Sunday = 0, never 7; ``seconds`` is ``(0,)`` for a five-field spec) and
    ``day_or`` tells whether a day matching *either* day field fires (both fields restricted)
    rather than one matching both. For ``@every`` specs ``every`` is the interval and the
    tuples are empty.
    """

    text: str
    seconds: tuple[int, ...] = ()
    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    days_of_month: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    days_of_week: tuple[int, ...] = ()
    day_or: bool = False
    every: timedelta | None = None

    def __str__(self) -> str:
        return self.text

    def matches(self, wall: datetime) -> bool:
        """Whether a wall-clock time (naive, or read as its own wall time) is a tick."""
        if self.every is not None:
            raise TypeError("@every specs are not matched against wall-clock time")
        return (
            wall.microsecond == 0
            and wall.second in self.seconds
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.matches_day(wall.date())
        )

    def matches_day(self, day: date) -> bool:
        """Whether ``day`` passes the day-of-month and day-of-week fields (see ``day_or``)."""
        in_month = day.day in self.days_of_month
        in_week = day.isoweekday() % 7 in self.days_of_week
        return (in_month or in_week) if self.day_or else (in_month and in_week)


def parse_spec(text: str) -> CronSpec:
    """Parse a schedule spec, or raise :class:`SpecError` naming the field and the value.

    Accepts five crontab(5) fields (minute hour day-of-month month day-of-week), six with a
    leading seconds field, ``@yearly``/``@annually``, ``@monthly``, ``@weekly``,
    ``@daily``/``@midnight``, ``@hourly`` and ``@every <duration>`` (``90s``, ``1h30m``,
    ``2d``; from 1 s to 366 days). A cron spec that can never fire is an error.
    """
    stripped = text.strip()
    if not stripped:
        raise SpecError("spec", text, "is empty")
    if len(stripped) > MAX_SPEC_LENGTH:
        raise SpecError("spec", stripped[:40] + "...", f"is longer than {MAX_SPEC_LENGTH}")
    if stripped.startswith("@"):
        return _parse_macro(stripped)
    fields = stripped.split()
    if len(fields) not in (5, 6):
        raise SpecError(
            "spec",
            stripped,
            f"has {len(fields)} fields; expected 5 (minute hour day-of-month month "
            "day-of-week) or 6 (a leading second, then those five)",
        )
    second_text = fields.pop(0) if len(fields) == 6 else "0"
    minute_text, hour_text, dom_text, month_text, dow_text = fields
    days_of_month = _parse_field(_DOM_FIELD, dom_text)
    months = _parse_field(_MONTH_FIELD, month_text)
    days_of_week = tuple(sorted({day % 7 for day in _parse_field(_DOW_FIELD, dow_text)}))
    # cronie sets DOM_STAR/DOW_STAR when the field's first character is '*' and only ORs
    # the day fields when neither is set; '*/2' therefore ANDs, exactly as in cron.
    day_or = not dom_text.startswith("*") and not dow_text.startswith("*")
    if not day_or and not any(
        day <= _LONGEST_MONTH[month] for month in months for day in days_of_month
    ):
        raise SpecError(
            "day-of-month",
            dom_text,
            f"never falls in the months of the month field ({month_text!r}), "
            "so the schedule would never fire",
        )
    return CronSpec(
        text=stripped,
        seconds=_parse_field(_SECOND_FIELD, second_text),
        minutes=_parse_field(_MINUTE_FIELD, minute_text),
        hours=_parse_field(_HOUR_FIELD, hour_text),
        days_of_month=days_of_month,
        months=months,
        days_of_week=days_of_week,
        day_or=day_or,
    )


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``), or a SpecError(``timezone``)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise SpecError("timezone", name, "is not a known IANA time zone") from exc


def _parse_macro(text: str) -> CronSpec:
    keyword, *rest_list = text.split(maxsplit=1)
    keyword = keyword.lower()
    rest = rest_list[0] if rest_list else ""
    if keyword == "@every":
        return CronSpec(text=text, every=_parse_duration(rest))
    if keyword == "@reboot":
        raise SpecError("spec", text, "is not supported: schedules fire on the clock, not at start")
    if keyword not in _MACROS or rest:
        raise SpecError(
            "spec",
            text,
            "is not a known macro (@yearly, @annually, @monthly, @weekly, @daily, @midnight, "
            "@hourly, @every <duration>)",
        )
    spec = parse_spec(_MACROS[keyword])
    return CronSpec(
        text=text,
        seconds=spec.seconds,
        minutes=spec.minutes,
        hours=spec.hours,
        days_of_month=spec.days_of_month,
        months=spec.months,
        days_of_week=spec.days_of_week,
        day_or=spec.day_or,
    )


def _parse_duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.lower())
    if not text or match is None:
        raise SpecError(
            "every", text, "is not a duration such as 90s, 15m, 1h30m or 2d (whole d, h, m, s)"
        )
    parts = {unit: int(value) for unit, value in match.groupdict(default="0").items()}
    duration = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if not MIN_EVERY <= duration <= MAX_EVERY:
        raise SpecError("every", text, "must be between 1s and 366d")
    return duration


def _parse_field(field: _Field, text: str) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise SpecError(field.name, text, "has an empty element in its list")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            step = _parse_step(field, step_text)
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            if not first or not last:
                raise SpecError(field.name, item, "is not a range (start-end)")
            low, high = _parse_value(field, first), _parse_value(field, last)
            if low > high:
                raise SpecError(field.name, item, "is a range whose start is after its end")
        else:
            low = _parse_value(field, base)
            # '5/10' means 5-<max>/10, as in cronie.
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    return tuple(sorted(values))


def _parse_step(field: _Field, text: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise SpecError(field.name, text, "is not a step (a whole number after '/')")
    step = int(text)
    span = field.high - field.low + 1
    if not 1 <= step <= span:
        raise SpecError(field.name, text, f"is not a step between 1 and {span}")
    return step


def _parse_value(field: _Field, text: str) -> int:
    if _NUMBER.fullmatch(text):
        value = int(text)
        if not field.low <= value <= field.high:
            raise SpecError(field.name, text, f"is out of range {field.low}-{field.high}")
        return value
    if field.names is not None and _NAME.fullmatch(text):
        named = field.names.get(text.lower())
        if named is not None:
            return named
        raise SpecError(field.name, text, f"is not one of the names {', '.join(field.names)}")
    expected = "a number or a name" if field.names is not None else "a number"
    raise SpecError(field.name, text, f"is not {expected}")
