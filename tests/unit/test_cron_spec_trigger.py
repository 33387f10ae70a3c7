"""CronSpecTrigger: APScheduler 3.11 runs jobs at the fire times of our own spec parser."""

from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from scheduler.spec import next_fire_time, parse_spec, parse_timezone
from scheduler.triggers import CronSpecTrigger

BERLIN = ZoneInfo("Europe/Berlin")


def trigger(text: str, zone: str = "UTC") -> CronSpecTrigger:
    return CronSpecTrigger(parse_spec(text), parse_timezone(zone))


def test_it_is_an_apscheduler_trigger():
    assert isinstance(trigger("0 12 * * 0"), BaseTrigger)


def test_first_fire_time_is_the_first_tick_at_or_after_now():
    noon = datetime(2026, 5, 3, 12, tzinfo=UTC)  # a Sunday
    cron = trigger("0 12 * * 7")
    assert cron.get_next_fire_time(None, noon) == noon
    assert cron.get_next_fire_time(None, noon + timedelta(seconds=1)) == noon + timedelta(days=7)


def test_next_fire_time_follows_the_previous_one_even_when_it_is_past():
    cron = trigger("*/15 9-17 * * mon-fri")
    previous = datetime(2026, 5, 1, 17, 45, tzinfo=UTC)  # a Friday
    now = datetime(2026, 5, 4, 12, tzinfo=UTC)
    # The missed Monday 09:00 tick is reported; APScheduler's misfire rules decide about it.
    assert cron.get_next_fire_time(previous, now) == datetime(2026, 5, 4, 9, tzinfo=UTC)


def test_a_previous_fire_time_ahead_of_the_clock_restarts_from_now():
    cron = trigger("0 * * * *")
    now = datetime(2026, 5, 4, 12, 30, tzinfo=UTC)
    assert cron.get_next_fire_time(now + timedelta(days=1), now) == now + timedelta(minutes=30)


def test_fire_times_follow_the_zone_and_its_dst_rule():
    cron = trigger("30 2 * * *", "Europe/Berlin")
    fire = cron.get_next_fire_time(None, datetime(2024, 3, 30, 12, tzinfo=UTC))
    assert fire == datetime(2024, 3, 31, 1, tzinfo=UTC)  # 03:00 CEST: 02:30 does not exist


def test_a_trigger_pickles_and_compares_by_spec_and_zone():
    cron = trigger("0 0 13 * 5", "America/New_York")
    copy = pickle.loads(pickle.dumps(cron))
    assert copy == cron
    assert hash(copy) == hash(cron)
    assert copy != trigger("0 0 13 * 5", "Europe/Berlin")
    assert str(cron) == "cron['0 0 13 * 5', America/New_York]"


async def test_apscheduler_schedules_and_runs_a_job_with_the_trigger():
    fired = asyncio.Event()
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start(paused=True)
    try:
        weekly = trigger("0 12 * * 0", "Europe/Berlin")
        before = datetime.now(UTC)
        job = scheduler.add_job(fired.set, weekly, id="weekly")
        assert before <= job.next_run_time <= before + timedelta(days=7)
        assert job.next_run_time.astimezone(BERLIN).strftime("%a %H:%M") == "Sun 12:00"
        assert job.next_run_time == next_fire_time(
            weekly.spec, job.next_run_time - timedelta(days=7), BERLIN
        )
        scheduler.remove_job("weekly")

        scheduler.add_job(fired.set, trigger("* * * * * *"), id="every-second")
        scheduler.resume()
        await asyncio.wait_for(fired.wait(), timeout=5)
    finally:
        scheduler.shutdown(wait=False)


def test_an_every_trigger_fires_on_its_epoch_multiples():
    cron = trigger("@every 90s", "Europe/Berlin")
    now = datetime(2026, 5, 4, 12, 0, 1, tzinfo=UTC)
    assert cron.get_next_fire_time(None, now) == datetime(2026, 5, 4, 12, 1, 30, tzinfo=UTC)
