"""Cron specs fire exactly when cron would: fire times against croniter, parsing and errors.

croniter is the independent reference (a test-only dependency). It is run with
``implement_cron_bug=True`` so that, like cronie and Vixie cron, a day field whose text starts
with ``*`` (``*/2`` included) counts as unrestricted and the day fields are AND-ed; and with
``second_at_beginning=True`` because our six-field form has the seconds first.
"""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from scheduler.errors import SchedulerError, SpecError
from scheduler.spec import (
    CronSpec,
    next_fire_time,
    parse_spec,
    parse_timezone,
    previous_fire_time,
)
from store.errors import LongshoreError

SPECS = [
    # The issue's own cases.
    "0 0 13 * 5",  # both day fields restricted: every 13th and every Friday
    "0 12 * * 0",
    "0 12 * * 7",
    "*/15 9-17 * * mon-fri",
    "0 0 29 2 *",
    # Plain fields, ranges and lists.
    "* * * * *",
    "59 23 31 12 *",
    "15,45 8,20 * * *",
    "0 9 1,15 * *",
    "0 0 31 * *",
    "0 0 30 * *",
    "0 4 8-14 * *",
    "0 22 * * 1-5",
    "0 0 * 2 *",
    # Steps.
    "*/5 * * * *",
    "1-30/5 * * * *",
    "5/10 * * * *",
    "0 */2 * * *",
    "30 */3 */2 * *",
    "0 0 1 */3 *",
    "0 6 10/7 * *",
    # Names, case-insensitive, in lists and ranges.
    "30 6 * jan-mar *",
    "0 0 1 JAN,jul *",
    "0 0,12 * * sun-tue",
    "0 8 * Dec Sat",
    # Day of week 7 is Sunday, also at the end of a range.
    "0 18 * * 5-7",
    "0 0 * * 6,0",
    # The day-of-month / day-of-week rule.
    "0 0 1 * 1",  # OR: the 1st and every Monday
    "0 0 1-7 * 1",  # OR, not "the first Monday"
    "0 0 1,15 * wed",
    "0 0 29 2 1",  # OR: Feb 29th and every Monday in February
    "0 0 30 2 fri",  # OR with a day-of-month that never occurs in February
    "0 0 */2 * 1",  # '*'-prefixed day-of-month: AND (cron's rule), odd-day Mondays
    "0 0 1 * */2",  # '*'-prefixed day-of-week: AND, the 1st when it is Sun/Tue/Thu/Sat
    "0 0 1,*/5 * 1",  # starts with '1', so OR
    # Six fields: a leading seconds field.
    "*/10 * * * * *",
    "30 0 12 * * mon",
    "0,30 15 10 * * *",
    "15/20 */2 * * * *",
    # Macros.
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
]

STARTS = [
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2025, 2, 28, 23, 59, 59, 500_000, tzinfo=UTC),
    # India has had no daylight-saving time since 1945 and sits half an hour off UTC.
    datetime(2026, 12, 31, 12, 34, 56, tzinfo=ZoneInfo("Asia/Kolkata")),
]


def reference_times(spec: str, start: datetime, count: int, *, forward: bool = True) -> list:
    iterator = croniter(spec, start, implement_cron_bug=True, second_at_beginning=True)
    step = iterator.get_next if forward else iterator.get_prev
    return [step(datetime) for _ in range(count)]


def our_times(spec: CronSpec, start: datetime, count: int, *, forward: bool = True) -> list:
    tz = start.tzinfo
    assert isinstance(tz, ZoneInfo) or tz is UTC
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo("UTC")
    step = next_fire_time if forward else previous_fire_time
    times, moment = [], start
    for _ in range(count):
        moment = step(spec, moment, zone)
        assert moment is not None
        times.append(moment)
    return times


def test_the_table_covers_at_least_thirty_specs():
    assert len(SPECS) >= 30


@pytest.mark.parametrize("start", STARTS, ids=lambda start: start.isoformat())
@pytest.mark.parametrize("text", SPECS)
def test_the_next_twenty_fire_times_equal_cron(text, start):
    assert our_times(parse_spec(text), start, 20) == reference_times(text, start, 20)


@pytest.mark.parametrize("text", SPECS)
def test_the_previous_twenty_fire_times_equal_cron(text):
    start = datetime(2031, 7, 15, 13, 7, 42, tzinfo=UTC)
    assert our_times(parse_spec(text), start, 20, forward=False) == reference_times(
        text, start, 20, forward=False
    )


def test_randomly_built_specs_fire_as_cron_does():
    rng = random.Random(20260501)

    def field(low: int, high: int, names: list[str] | None = None, *, start_step=True) -> str:
        def value() -> str:
            number = rng.randint(low, high)
            if names and rng.random() < 0.3:
                return names[number % len(names)]
            return str(number)

        shapes = ["*", "value", "range", "list", "step", "range-step"]
        shape = rng.choice([*shapes, "start-step"] if start_step else shapes)
        if shape == "*":
            return "*"
        if shape == "value":
            return value()
        a, b = sorted(rng.sample(range(low, high + 1), 2))
        span = high - low + 1
        if shape == "range":
            return f"{a}-{b}"
        if shape == "list":
            return ",".join(str(n) for n in rng.sample(range(low, high + 1), rng.randint(2, 4)))
        if shape == "step":
            return f"*/{rng.randint(1, span)}"
        if shape == "range-step":
            return f"{a}-{b}/{rng.randint(1, span)}"
        return f"{a}/{rng.randint(1, span)}"

    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    checked = 0
    while checked < 150:
        parts = [
            field(0, 59),
            field(0, 23),
            field(1, 31),
            field(1, 12, [months[-1], *months[:-1]]),
            # croniter ends 'N/step' in day-of-week at 6, cron at 7 (see the test below).
            field(0, 6, days, start_step=False),
        ]
        if rng.random() < 0.3:
            parts.insert(0, field(0, 59))
        text = " ".join(parts)
        try:
            spec = parse_spec(text)
        except SpecError:
            continue  # e.g. the 30th of February only
        start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**9))
        assert our_times(spec, start, 5) == reference_times(text, start, 5), text
        assert our_times(spec, start, 5, forward=False) == reference_times(
            text, start, 5, forward=False
        ), text
        checked += 1


def test_a_start_and_step_in_day_of_week_runs_to_7_as_in_cron():
    # cron reads '1/2' as '1-7/2' and 7 is Sunday; croniter stops at 6 and leaves Sunday out.
    assert parse_spec("0 0 * * 1/2").days_of_week == (0, 1, 3, 5)
    assert parse_spec("0 0 * * 1/2").days_of_week == parse_spec("0 0 * * 1-7/2").days_of_week


def test_february_29th_is_found_across_the_skipped_leap_year_2100():
    spec = parse_spec("0 0 29 2 *")
    after = datetime(2096, 3, 1, tzinfo=UTC)
    assert next_fire_time(spec, after, ZoneInfo("UTC")) == datetime(2104, 2, 29, tzinfo=UTC)
    assert previous_fire_time(spec, after, ZoneInfo("UTC")) == datetime(2096, 2, 29, tzinfo=UTC)


def test_a_spec_with_no_tick_before_year_10000_has_no_next_fire_time():
    spec = parse_spec("0 0 29 2 *")
    assert next_fire_time(spec, datetime(9996, 3, 1, tzinfo=UTC), ZoneInfo("UTC")) is None
    assert previous_fire_time(spec, datetime(4, 2, 28, tzinfo=UTC), ZoneInfo("UTC")) is None


def test_fire_times_are_strictly_after_and_before_the_given_instant():
    spec, utc = parse_spec("0 12 * * *"), ZoneInfo("UTC")
    noon = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert next_fire_time(spec, noon, utc) == noon + timedelta(days=1)
    assert next_fire_time(spec, noon - timedelta(microseconds=1), utc) == noon
    assert previous_fire_time(spec, noon, utc) == noon - timedelta(days=1)
    assert previous_fire_time(spec, noon + timedelta(microseconds=1), utc) == noon


def test_fire_times_are_utc_whatever_the_zone():
    fire = next_fire_time(
        parse_spec("0 9 * * *"), datetime(2026, 4, 30, 12, tzinfo=UTC), ZoneInfo("Asia/Tokyo")
    )
    assert fire == datetime(2026, 5, 1, 0, tzinfo=UTC)
    assert fire is not None
    assert fire.tzinfo is UTC


def test_a_naive_instant_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_time(parse_spec("* * * * *"), datetime(2026, 1, 1), ZoneInfo("UTC"))


# --- Parsing ----------------------------------------------------------------------------------


def test_a_five_field_spec_lists_the_values_each_field_allows():
    spec = parse_spec("*/20 9-11 1,15 jan-mar mon-fri")
    assert spec.seconds == (0,)
    assert spec.minutes == (0, 20, 40)
    assert spec.hours == (9, 10, 11)
    assert spec.days_of_month == (1, 15)
    assert spec.months == (1, 2, 3)
    assert spec.days_of_week == (1, 2, 3, 4, 5)
    assert spec.day_or is True
    assert spec.every is None
    assert str(spec) == "*/20 9-11 1,15 jan-mar mon-fri"


@pytest.mark.parametrize(
    ("text", "day_or"),
    [
        ("0 0 13 * 5", True),
        ("0 0 1-31 * 1", True),
        ("0 0 * * 5", False),
        ("0 0 13 * *", False),
        ("0 0 */2 * 1", False),
        ("0 0 1 * */2", False),
        ("0 0 1,*/5 * 1", True),
    ],
)
def test_the_day_fields_are_or_ed_only_when_neither_starts_with_a_star(text, day_or):
    assert parse_spec(text).day_or is day_or


@pytest.mark.parametrize(
    "text", ["0 0 * * 0", "0 0 * * 7", "0 0 * * 7-7", "0 0 * * sun", "0 0 * * SUN"]
)
def test_sunday_is_0_7_and_sun(text):
    assert parse_spec(text).days_of_week == (0,)


def test_a_range_ending_at_7_wraps_to_sunday():
    assert parse_spec("0 0 * * 5-7").days_of_week == (0, 5, 6)


def test_a_six_field_spec_has_the_seconds_first():
    spec = parse_spec("30 15 10 * * *")
    assert (spec.seconds, spec.minutes, spec.hours) == ((30,), (15,), (10,))


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_mean_their_crontab_equivalents(macro, equivalent):
    spec, plain = parse_spec(macro), parse_spec(equivalent)
    assert spec.text == macro
    fields = ("seconds", "minutes", "hours", "days_of_month", "months", "days_of_week", "day_or")
    assert [getattr(spec, f) for f in fields] == [getattr(plain, f) for f in fields]


def test_surrounding_and_repeated_whitespace_is_ignored():
    assert parse_spec("  0\t12  * *   1 \n").minutes == (0,)


def test_a_spec_is_a_hashable_frozen_value():
    spec = parse_spec("0 12 * * 1")
    assert spec == parse_spec("0 12 * * 1")
    assert hash(spec) == hash(parse_spec("0 12 * * 1"))
    with pytest.raises(AttributeError):
        spec.text = "* * * * *"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "field", "value", "message"),
    [
        ("* * * * 8", "day-of-week", "8", "day-of-week: '8' is out of range 0-7"),
        ("60 * * * *", "minute", "60", "minute: '60' is out of range 0-59"),
        ("0 24 * * *", "hour", "24", "hour: '24' is out of range 0-23"),
        ("0 0 0 * *", "day-of-month", "0", "day-of-month: '0' is out of range 1-31"),
        ("0 0 32 * *", "day-of-month", "32", "day-of-month: '32' is out of range 1-31"),
        ("0 0 * 13 *", "month", "13", "month: '13' is out of range 1-12"),
        ("0 0 * 0 *", "month", "0", "month: '0' is out of range 1-12"),
        ("60 * * * * *", "second", "60", "second: '60' is out of range 0-59"),
        ("0 0 * * funday", "day-of-week", "funday", None),
        ("0 0 * janu *", "month", "janu", None),
        ("0 mon * * *", "hour", "mon", "hour: 'mon' is not a number"),
        ("5-1 * * * *", "minute", "5-1", None),
        ("*/0 * * * *", "minute", "0", None),
        ("*/61 * * * *", "minute", "61", None),
        ("0 */x * * *", "hour", "x", None),
        ("0 0 1,,2 * *", "day-of-month", "1,,2", None),
        ("0 0 L * *", "day-of-month", "L", None),
        ("0 0 ? * *", "day-of-month", "?", None),
        ("0 0 * * 1#2", "day-of-week", "1#2", None),
        ("0 0 * * 5L", "day-of-week", "5L", None),
        ("0 0 15W * *", "day-of-month", "15W", None),
        ("0 0 -1 * *", "day-of-month", "-1", None),
        ("0 0 \uff13 * *", "day-of-month", "\uff13", None),  # a full-width digit three
        ("0 0 31 2 *", "day-of-month", "31", None),
        ("0 0 30,31 2 *", "day-of-month", "30,31", None),
        ("0 0 31 apr,jun,sep,nov *", "day-of-month", "31", None),
        ("* * *", "spec", "* * *", None),
        ("* * * * * * *", "spec", "* * * * * * *", None),
        ("", "spec", "", "spec: '' is empty"),
        ("@reboot", "spec", "@reboot", None),
        ("@fortnightly", "spec", "@fortnightly", None),
        ("@daily 5", "spec", "@daily 5", None),
        ("@every", "every", "", None),
        ("@every 0s", "every", "0s", None),
        ("@every 1.5h", "every", "1.5h", None),
        ("@every 500ms", "every", "500ms", None),
        ("@every 30m1h", "every", "30m1h", None),
        ("@every 367d", "every", "367d", None),
    ],
)
def test_a_bad_spec_names_the_field_and_the_value(text, field, value, message):
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    assert (caught.value.field, caught.value.value) == (field, value)
    if message is not None:
        assert str(caught.value) == message
    assert str(caught.value).startswith(f"{field}: {value!r}")


def test_a_never_firing_spec_is_rejected_with_the_reason():
    with pytest.raises(SpecError, match="never"):
        parse_spec("0 0 31 2 *")


def test_spec_errors_are_longshore_value_errors_that_survive_pickling():
    with pytest.raises(SpecError) as caught:
        parse_spec("* * * * 8")
    error = caught.value
    assert isinstance(error, SchedulerError)
    assert isinstance(error, LongshoreError)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.value, str(copy)) == (error.field, error.value, str(error))


# --- Time zones -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_iana_zones_are_accepted(name):
    assert parse_timezone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus_Mons", "", "europe/berlin ", "/etc/passwd", "../UTC"]
)
def test_an_unknown_zone_is_a_spec_error_naming_it(name):
    with pytest.raises(SpecError) as caught:
        parse_timezone(name)
    assert (caught.value.field, caught.value.value) == ("timezone", name)
    assert str(caught.value) == f"timezone: {name!r} is not a known IANA time zone"
