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

Counted by the process's run retention and removal of crash leftovers (see
:mod:`admin.metrics`): the ``longshore_retention_*`` families.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from jobrunner.run_retention import RetentionCounters
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


def retention_families(counters: RetentionCounters | None) -> Iterator[Metric]:
    if counters is None:
        return
    yield CounterMetricFamily(
        "longshore_retention_passes", "Run retention passes.", value=counters.passes
    )
    deleted = counters.runs_deleted
    yield CounterMetricFamily("longshore_retention_runs_deleted", "Runs deleted.", value=deleted)
    freed = CounterMetricFamily(
        "longshore_retention_freed_bytes",
        "Bytes freed: blobs of deleted runs, crash leftovers.",
        labels=["kind"],
    )
    freed.add_metric(["blobs"], counters.bytes_freed)
    freed.add_metric(["leftovers"], counters.leftover_bytes_freed)
    yield freed
    yield GaugeMetricFamily(
        "longshore_retention_last_pass_seconds",
        "How long the last run retention pass took.",
        value=counters.last_pass_seconds,
    )
