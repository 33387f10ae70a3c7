"""Which skips are missed firings (a catch-up range enumerated, capped), and how missed
firings and notification outcomes are counted in the metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from admin.metrics_alerts import AlertCounters
from scheduler.factories import FiringKind
from scheduler.firing.models import Skip, SkipReason, Tick
from scheduler.missed import MAX_PER_RANGE, missed_of_late_firings, missed_of_skips
from store.events.models import Stream
from store.schedules.models import Schedule

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
EVERY_MINUTE = Schedule(name="minutely", spec="* * * * *")


def skip(reason: str, *, kind: FiringKind = FiringKind.TICK, **data: str) -> Skip:
    return Skip(
        schedule=EVERY_MINUTE,
        kind=kind,
        fire_time=T0,
        reason=reason,
        detail="",
        data=dict(data),
    )


def test_only_firings_lost_by_time_or_outage_are_missed() -> None:
    assert len(missed_of_skips([skip(SkipReason.MISFIRE)])) == 1
    assert len(missed_of_skips([skip(SkipReason.STORE_UNAVAILABLE)])) == 1
    assert missed_of_skips([skip(SkipReason.PAUSED)]) == []
    assert missed_of_skips([skip(SkipReason.OVERLAP)]) == []
    assert missed_of_skips([skip(SkipReason.MISFIRE, kind=FiringKind.MANUAL)]) == []


def test_a_catch_up_range_is_one_missed_firing_per_tick() -> None:
    until = (T0 + timedelta(minutes=5)).isoformat()
    missed = missed_of_skips(
        [skip(SkipReason.MISFIRE, missedFrom=T0.isoformat(), missedUntil=until)]
    )
    assert [m.scheduled_at for m in missed] == [T0 + timedelta(minutes=n) for n in range(5)]
    assert all(m.omitted == 0 for m in missed)


def test_a_long_range_is_capped_and_says_how_many_more() -> None:
    until = (T0 + timedelta(minutes=MAX_PER_RANGE + 40)).isoformat()
    missed = missed_of_skips([skip(SkipReason.MISFIRE, missedUntil=until)])
    assert len(missed) == MAX_PER_RANGE
    assert missed[-1].omitted == 40
    assert sum(1 + m.omitted for m in missed) == MAX_PER_RANGE + 40


def test_a_late_catch_up_firing_is_missed_and_an_on_time_tick_is_not() -> None:
    late = Tick(schedule=EVERY_MINUTE, kind=FiringKind.CATCH_UP, fire_time=T0)
    on_time = Tick(schedule=EVERY_MINUTE, kind=FiringKind.TICK, fire_time=T0)
    assert [m.reason for m in missed_of_late_firings([late, on_time])] == ["catch_up"]


def test_notification_outcomes_and_missed_firings_are_counted() -> None:
    registry = CollectorRegistry()
    counters = AlertCounters(registry)
    counters.observe(Stream.RUNS, "nightly", "NotificationDelivered", {})
    counters.observe(Stream.RUNS, "nightly", "NotificationFailed", {})
    counters.observe(Stream.SCHEDULES, "hourly", "NotificationDeadLettered", {})
    counters.observe(Stream.SCHEDULES, "hourly", "ScheduleMissed", {})
    counters.observe(Stream.SCHEDULES, "hourly", "ScheduleMissed", {"omitted": 5})
    assert not counters.observe(Stream.RUNS, "nightly", "RunFailed", {})

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("longshore_notifications_total", outcome="delivered") == 1
    assert value("longshore_notifications_total", outcome="failed") == 1
    assert value("longshore_notifications_total", outcome="dead_lettered") == 1
    assert value("longshore_schedule_missed_total", schedule="hourly") == 7
