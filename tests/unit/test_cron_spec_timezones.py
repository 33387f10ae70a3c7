"""Cron specs at daylight-saving changes, and ``@every`` in absolute time.

The documented rule (docs/schedules.md): specs are wall-clock times in the schedule's zone; a
wall time that does not exist fires once at the first instant after the gap; a wall time that
happens twice fires once, at its first occurrence.

2024 transitions used here:
- Europe/Berlin: 31 March 02:00 CET -> 03:00 CEST; 27 October 03:00 CEST -> 02:00 CET.
- America/New_York: 10 March 02:00 EST -> 03:00 EDT; 3 November 02:00 EDT -> 01:00 EST.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.spec import CronSpec, next_fire_time, parse_spec, previous_fire_time

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")


def fires_between(spec: CronSpec, start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    times, moment = [], start
    while True:
        moment = next_fire_time(spec, moment, tz)
        assert moment is not None
        if moment >= end:
            return times
        times.append(moment)


def fires_backwards(spec: CronSpec, end: datetime, start: datetime, tz: ZoneInfo) -> list:
    times, moment = [], end
    while True:
        moment = previous_fire_time(spec, moment, tz)
        assert moment is not None
        if moment < start:
            return times[::-1]
        times.append(moment)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "start", "expected"),
    [
        pytest.param(
            BERLIN,
            date(2024, 3, 29),
            [
                utc(2024, 3, 29, 1, 30),
                utc(2024, 3, 30, 1, 30),
                utc(2024, 3, 31, 1, 0),  # 03:00 CEST: 02:30 does not exist that night
                utc(2024, 4, 1, 0, 30),
                utc(2024, 4, 2, 0, 30),
            ],
            id="berlin-spring-forward-fires-at-03:00",
        ),
        pytest.param(
            BERLIN,
            date(2024, 10, 25),
            [
                utc(2024, 10, 25, 0, 30),
                utc(2024, 10, 26, 0, 30),
                utc(2024, 10, 27, 0, 30),  # 02:30 CEST, the first of two 02:30s
                utc(2024, 10, 28, 1, 30),
                utc(2024, 10, 29, 1, 30),
            ],
            id="berlin-fall-back-fires-at-the-first-02:30",
        ),
        pytest.param(
            NEW_YORK,
            date(2024, 3, 8),
            [
                utc(2024, 3, 8, 7, 30),
                utc(2024, 3, 9, 7, 30),
                utc(2024, 3, 10, 7, 0),  # 03:00 EDT: 02:30 does not exist that night
                utc(2024, 3, 11, 6, 30),
                utc(2024, 3, 12, 6, 30),
            ],
            id="new-york-spring-forward-fires-at-03:00",
        ),
        pytest.param(
            NEW_YORK,
            date(2024, 11, 1),
            [
                utc(2024, 11, 1, 6, 30),
                utc(2024, 11, 2, 6, 30),
                utc(2024, 11, 3, 7, 30),  # 02:30 EST; only 01:00-02:00 repeats in New York
                utc(2024, 11, 4, 7, 30),
                utc(2024, 11, 5, 7, 30),
            ],
            id="new-york-fall-back-02:30-happens-once",
        ),
    ],
)
def test_half_past_two_fires_once_a_day_across_dst_changes(tz, start, expected):
    spec = parse_spec("30 2 * * *")
    begin = datetime.combine(start, datetime.min.time(), tzinfo=tz)
    end = begin + timedelta(days=5)
    fired = fires_between(spec, begin, end, tz)
    assert fired == expected
    assert fires_backwards(spec, end, begin, tz) == expected
    local_days = [moment.astimezone(tz).date() for moment in fired]
    assert local_days == [start + timedelta(days=n) for n in range(5)]


def test_a_missing_wall_time_fires_at_the_first_instant_after_the_gap():
    fire = next_fire_time(parse_spec("30 2 * * *"), utc(2024, 3, 30, 12), BERLIN)
    assert fire is not None
    assert fire.astimezone(BERLIN).isoformat() == "2024-03-31T03:00:00+02:00"


def test_half_past_one_in_new_york_fires_at_the_first_of_its_two_occurrences():
    spec = parse_spec("30 1 * * *")
    fired = fires_between(spec, utc(2024, 11, 2, 12), utc(2024, 11, 4, 12), NEW_YORK)
    assert [moment.astimezone(NEW_YORK).isoformat() for moment in fired] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:30:00-05:00",
    ]


def test_ticks_in_a_gap_collapse_into_one_firing():
    spec = parse_spec("*/15 * * * *")
    fired = fires_between(spec, utc(2024, 3, 31, 0, 29), utc(2024, 3, 31, 1, 31), BERLIN)
    # 01:30, 01:45 CET; 02:00-02:45 do not exist and fire with 03:00 CEST; then 03:15, 03:30.
    assert [moment.astimezone(BERLIN).strftime("%H:%M%z") for moment in fired] == [
        "01:30+0100",
        "01:45+0100",
        "03:00+0200",
        "03:15+0200",
        "03:30+0200",
    ]


def test_the_repeated_hour_fires_only_in_its_first_pass():
    spec = parse_spec("*/30 * * * *")
    fired = fires_between(spec, utc(2024, 11, 3, 4, 1), utc(2024, 11, 3, 8, 1), NEW_YORK)
    assert [moment.astimezone(NEW_YORK).strftime("%H:%M%z") for moment in fired] == [
        "00:30-0400",
        "01:00-0400",
        "01:30-0400",
        # 01:00 and 01:30 EST repeat wall times that already fired.
        "02:00-0500",
        "02:30-0500",
        "03:00-0500",
    ]
    assert fires_backwards(spec, utc(2024, 11, 3, 8, 1), utc(2024, 11, 3, 4, 1), NEW_YORK) == fired


def test_from_inside_the_second_pass_the_next_tick_is_after_the_repeat():
    spec = parse_spec("*/30 * * * *")
    inside = datetime(2024, 11, 3, 1, 10, tzinfo=NEW_YORK, fold=1)  # 01:10 EST, 06:10 UTC
    assert inside.astimezone(UTC) == utc(2024, 11, 3, 6, 10)
    assert next_fire_time(spec, inside, NEW_YORK) == utc(2024, 11, 3, 7)  # 02:00 EST
    assert previous_fire_time(spec, inside, NEW_YORK) == utc(2024, 11, 3, 5, 30)  # 01:30 EDT


def test_every_second_in_the_second_pass_is_quick_and_skips_the_repeat():
    spec = parse_spec("* * * * * *")
    inside = utc(2024, 11, 3, 6, 0, 1)  # 01:00:01 EST, second pass
    assert next_fire_time(spec, inside, NEW_YORK) == utc(2024, 11, 3, 7)
    assert previous_fire_time(spec, inside, NEW_YORK) == utc(2024, 11, 3, 5, 59, 59)


def test_a_zone_without_dst_changes_nothing():
    spec = parse_spec("30 2 * * *")
    fired = fires_between(spec, utc(2024, 3, 29), utc(2024, 4, 2), UTC_ZONE)
    assert fired == [utc(2024, 3, d, 2, 30) for d in (29, 30, 31)] + [utc(2024, 4, 1, 2, 30)]


# --- @every ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("@every 90s", 90),
        ("@every 1h30m", 5400),
        ("@every 15m", 900),
        ("@every 2d", 172_800),
        ("@every 1d2h3m4s", 93_784),
        ("@every 1s", 1),
        ("@EVERY 10S", 10),
        ("@every   45s", 45),
    ],
)
def test_every_parses_its_duration(text, seconds):
    spec = parse_spec(text)
    assert spec.every == timedelta(seconds=seconds)
    assert spec.text == text.strip()


def test_every_fires_at_multiples_of_its_interval_since_the_epoch():
    spec = parse_spec("@every 1h30m")
    fired = fires_between(spec, utc(2026, 5, 1), utc(2026, 5, 1, 6), UTC_ZONE)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert all((moment - epoch) % timedelta(minutes=90) == timedelta(0) for moment in fired)
    assert [b - a for a, b in itertools.pairwise(fired)] == [timedelta(minutes=90)] * 2
    assert fired[0] == utc(2026, 5, 1, 1, 30)


def test_every_is_absolute_time_whatever_the_zone_and_dst():
    spec = parse_spec("@every 90s")
    start, end = utc(2024, 10, 27, 0), utc(2024, 10, 27, 2)  # Berlin's repeated hour inside
    in_berlin = fires_between(spec, start, end, BERLIN)
    assert in_berlin == fires_between(spec, start, end, UTC_ZONE)
    # Every 90-second tick strictly inside the two hours: none lost, none doubled.
    assert len(in_berlin) == 79


def test_every_is_strictly_after_and_before():
    spec = parse_spec("@every 90s")
    tick = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=90 * 20_000_000)
    assert next_fire_time(spec, tick, UTC_ZONE) == tick + timedelta(seconds=90)
    assert next_fire_time(spec, tick - timedelta(microseconds=1), UTC_ZONE) == tick
    assert previous_fire_time(spec, tick, UTC_ZONE) == tick - timedelta(seconds=90)
    assert previous_fire_time(spec, tick + timedelta(microseconds=1), UTC_ZONE) == tick


def test_every_matches_no_wall_clock_time():
    with pytest.raises(TypeError):
        parse_spec("@every 1m").matches(datetime(2026, 1, 1))
