"""The metric families operators alert on, beside :mod:`admin.metrics`' own.

Observed from the event store (with one), since the metrics were made:

- ``longshore_notifications_total{outcome}``: notification deliveries ``delivered``,
  ``failed`` (an attempt that will be retried) and ``dead_lettered`` (out of attempts).
- ``longshore_schedule_missed_total{schedule}``: firings not enqueued within their grace
  (``ScheduleMissed`` events of the scheduler's missed-run check; an event that stands for
  ``omitted`` more ticks of a long outage counts them too).

Read from the run store when scraped:

- ``longshore_schedule_last_success_timestamp{schedule}`` gauge: the Unix time of the last
  successful run each schedule started (schedules without one are not listed), so
  ``time() - longshore_schedule_last_success_timestamp > ...`` alerts on silence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from store.events.models import EventType, Stream

NOTIFICATION_OUTCOMES = {
    EventType.NOTIFICATION_DELIVERED.value: "delivered",
    EventType.NOTIFICATION_FAILED.value: "failed",
    EventType.NOTIFICATION_DEAD_LETTERED.value: "dead_lettered",
}
OBSERVED_TYPES = frozenset({*NOTIFICATION_OUTCOMES, EventType.SCHEDULE_MISSED.value})
"""The event types :class:`AlertCounters` observes."""


class AlertCounters:
    """The event-fed counters of the module docstring, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "longshore_notifications",
            "Notification deliveries by outcome (delivered, failed and retried, dead_lettered).",
            ["outcome"],
            registry=registry,
        )
        for outcome in NOTIFICATION_OUTCOMES.values():
            self.notifications.labels(outcome)
        self.missed = Counter(
            "longshore_schedule_missed",
            "Schedule firings not enqueued within their grace.",
            ["schedule"],
            registry=registry,
        )

    def observe(self, stream: Stream, key: str, kind: str, data: Mapping[str, Any]) -> bool:
        """Count the event if it is one of :data:`OBSERVED_TYPES`; whether it was."""
        outcome = NOTIFICATION_OUTCOMES.get(kind)
        if outcome is not None:
            self.notifications.labels(outcome).inc()
            return True
        if kind == EventType.SCHEDULE_MISSED.value and stream is Stream.SCHEDULES:
            omitted = data.get("omitted", 0)
            more = omitted if isinstance(omitted, int) and omitted > 0 else 0
            self.missed.labels(key).inc(1 + more)
            return True
        return False


def last_success_family(last_success: Mapping[str, datetime] | None) -> Iterator[Metric]:
    if last_success is None:
        return
    gauge = GaugeMetricFamily(
        "longshore_schedule_last_success_timestamp",
        "Unix time of the last successful run each schedule started.",
        labels=["schedule"],
    )
    for schedule, moment in sorted(last_success.items()):
        gauge.add_metric([schedule], moment.timestamp())
    yield gauge
