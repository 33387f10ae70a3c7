"""Metrics of the admin API and of the service it looks at (SPEC §7), with prometheus-client.

Each app has its own :class:`AdminMetrics` in a registry of its own (never the process-wide
default registry: one process may build many apps, and their numbers must not mix). It is
made on the app's first request (:func:`metrics_of`) and kept in ``app.state``.

Families
--------
Read from the stores when scraped (:meth:`AdminMetrics.refresh`, then a custom collector
yields the snapshot):

- ``longshore_queue_tasks{queue,state}`` gauge: tasks ``ready``, ``scheduled``, ``running``
  and ``dead`` per queue (the queue's own aggregate, ``TaskQueue.list_queues``).
- ``longshore_queue_paused{queue}`` gauge (1 = paused), ``longshore_dequeue_paused`` gauge.
- ``longshore_queue_completed_total{queue}``, ``longshore_queue_failed_total{queue}``:
  the queue's persisted counters (they survive restarts).
- ``longshore_workers`` gauge: registered workers.
- ``longshore_runs_unfinished{status}`` gauge: runs ``queued``, ``fetching``, ``building``,
  ``running`` (with a run store). Only the unfinished statuses are counted: counting the
  final ones would scan every run ever recorded on every scrape.
- ``longshore_schedules{status}`` gauge: schedules ``healthy``, ``paused``, ``lagging``
  (with a schedule manager; the first :data:`SCHEDULES_MAX` schedules by name).

Observed from the event store (with one), since the metrics were made (the families operators
alert on — notifications, missed firings, last success per schedule — are in
:mod:`admin.metrics_alerts`):

- ``longshore_runs_finished_total{job,status}`` counter of final run events.
- ``longshore_run_duration_seconds{job,status}`` histogram: ``running`` to final (the
  container's run; runs that never started a container are not observed).
- ``longshore_build_duration_seconds{job}`` histogram: ``building`` to the next stage
  (runs whose image was cached skip the build and are not observed).
- ``longshore_schedule_fire_lag_seconds`` histogram: how late a tick (or a caught-up tick)
  was enqueued after its scheduled time. Manual runs are not observed.

Counted by the process's run retention and removal of crash leftovers (with them;
``longshore serve`` prunes only while its scheduler leads, so on PostgreSQL the numbers are
those of the leading ``serve``):

- ``longshore_retention_passes_total``, ``longshore_retention_runs_deleted_total``,
  ``longshore_retention_freed_bytes_total{kind}`` (``blobs`` of deleted runs, crash
  ``leftovers``), ``longshore_retention_last_pass_seconds`` gauge.

Counted by the process's job runner (with one; each process counts its own attempts):

- ``longshore_runs_waiting{reason}`` gauge: attempts waiting now for their infrastructure
  (``engine``, ``network``, ``disk``; see :mod:`jobrunner.infra_wait`),
  ``longshore_infra_waits_total{reason}`` the waits begun, and
  ``longshore_infra_waits_exhausted_total`` the attempts that used up their wait budget.

The events are not pushed to this object: each scrape first reads the run and schedule
events appended since the previous one (``EventStore.since`` from a cursor, at most
:data:`CATCH_UP_PAGES` pages, the rest on the next scrape). So nothing runs in the
background, and runs finished by any worker sharing the event directory are counted.

Recorded by :class:`admin.middleware.AdminMiddleware` on every request:

- ``longshore_http_requests_total{method,route,status}`` counter and
  ``longshore_http_request_duration_seconds{method,route}`` histogram. ``route`` is the
  route's template (``/admin/v1/queues/{name}``), ``unmatched`` when no route matched: never
  the raw path, whose values are unbounded.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import Scope

from admin.metrics_alerts import OBSERVED_TYPES, AlertCounters, last_success_family
from admin.metrics_process import infra_families, retention_families
from admin.services import AdminServices
from scheduler.status import ScheduleStatus
from store.events.models import EventFilter, EventType, Stream
from store.jobs.models import RunStatus
from store.queue.models import QueueInfo

logger = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"
"""The ``route`` label of a request no route matched."""
CATCH_UP_PAGES = 20
CATCH_UP_PAGE = 1000
SCHEDULES_MAX = 1000
QUEUE_STATES = ("ready", "scheduled", "running", "dead")
UNFINISHED = (RunStatus.QUEUED, RunStatus.FETCHING, RunStatus.BUILDING, RunStatus.RUNNING)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RUN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
BUILD_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

_FINAL_EVENTS = {
    EventType.RUN_SUCCEEDED.value: RunStatus.SUCCEEDED,
    EventType.RUN_FAILED.value: RunStatus.FAILED,
    EventType.RUN_TIMED_OUT.value: RunStatus.TIMED_OUT,
    EventType.RUN_CANCELLED.value: RunStatus.CANCELLED,
}
_OBSERVED = EventFilter(
    streams=frozenset({Stream.RUNS, Stream.SCHEDULES}),
    types=frozenset({*_FINAL_EVENTS, EventType.SCHEDULE_FIRED.value, *OBSERVED_TYPES}),
)


@dataclass
class _Snapshot:
    """What the last refresh read from the stores."""

    queues: list[QueueInfo] = field(default_factory=list)
    dequeue_paused: bool = False
    workers: int = 0
    unfinished_runs: dict[str, int] | None = None
    schedules: dict[str, int] | None = None
    last_success: dict[str, datetime] | None = None


class AdminMetrics:
    """The registry of one app and the families in it (see the module docstring)."""

    def __init__(self, services: AdminServices) -> None:
        self.registry = CollectorRegistry()
        self._services = services
        self._snapshot = _Snapshot()
        self._lock = asyncio.Lock()
        events = services.events
        self._cursor = 0 if events is None else events.last_id
        registry = self.registry
        self.http_requests = Counter(
            "longshore_http_requests",
            "Admin API requests by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "longshore_http_request_duration_seconds",
            "Admin API request latency (to the end of the response body).",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.runs_finished = Counter(
            "longshore_runs_finished",
            "Runs that reached a final status, by job and status.",
            ["job", "status"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "longshore_run_duration_seconds",
            "Time from a run's container start to its final status.",
            ["job", "status"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.build_duration = Histogram(
            "longshore_build_duration_seconds",
            "Time a run spent building its image.",
            ["job"],
            buckets=BUILD_BUCKETS,
            registry=registry,
        )
        self.fire_lag = Histogram(
            "longshore_schedule_fire_lag_seconds",
            "How long after its scheduled time a schedule tick was enqueued.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.alerts = AlertCounters(registry)
        registry.register(_StoreCollector(self))

    @property
    def services(self) -> AdminServices:
        return self._services

    @property
    def last_read(self) -> _Snapshot:
        """What the last :meth:`refresh` read from the stores."""
        return self._snapshot

    # --- recording ------------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request (``route`` is a template or :data:`UNMATCHED`)."""
        method = method if method in HTTP_METHODS else "OTHER"
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(max(seconds, 0.0))

    # --- scraping -------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Catch up with the event store, then read the gauges from the stores. Raises
        ``StoreUnavailable`` when the queue's database cannot be reached."""
        async with self._lock:
            await self._catch_up()
            self._snapshot = await self._read_stores()

    def prometheus_text(self) -> bytes:
        """The registry in the Prometheus text format 0.0.4 (as of the last refresh)."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """The registry as JSON: ``{family: {"type", "help", "samples": [{"name", "labels",
        "value"}]}}`` (as of the last refresh)."""
        families: dict[str, Any] = {}
        for family in self.registry.collect():
            families[family.name] = {
                "type": family.type,
                "help": family.documentation,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": s.value}
                    for s in family.samples
                ],
            }
        return families

    async def _read_stores(self) -> _Snapshot:
        services = self._services
        queue = services.queue
        snapshot = _Snapshot(
            queues=await queue.list_queues(),
            dequeue_paused=await queue.is_global_paused(),
            workers=len(await queue.list_workers()),
        )
        runs = services.runs
        if runs is not None:
            snapshot.unfinished_runs = {
                status.value: (await runs.list_runs(status=status, limit=0, offset=0)).total
                for status in UNFINISHED
            }
            snapshot.last_success = {
                name: health.last_success_at
                for name, health in (await runs.schedule_health()).items()
                if health.last_success_at is not None
            }
        if services.schedules is not None:
            page = await services.schedules.list_views(
                limit=SCHEDULES_MAX, offset=0, last_fired=False
            )
            counts = dict.fromkeys((s.value for s in ScheduleStatus), 0)
            for view in page.items:
                counts[view.status.value] += 1
            snapshot.schedules = counts
        return snapshot

    async def _catch_up(self) -> None:
        events = self._services.events
        if events is None:
            return
        try:
            for _ in range(CATCH_UP_PAGES):
                # Every event up to the store's last id is returned by ``since``; past a short
                # page the cursor can skip to it (not to re-read run output on each scrape).
                horizon = events.last_id
                page = await events.since(self._cursor, _OBSERVED, CATCH_UP_PAGE)
                for event in page:
                    self._cursor = event.id  # first, so no event is ever observed twice
                    self._observe(event.stream, event.key, event.type, event.data)
                if len(page) < CATCH_UP_PAGE:
                    self._cursor = max(self._cursor, horizon)
                    return
        except Exception as exc:  # the gauges are still worth serving
            logger.warning("could not read events for metrics", extra={"error": str(exc)})

    def _observe(self, stream: Stream, key: str, kind: str, data: Mapping[str, Any]) -> None:
        if self.alerts.observe(stream, key, kind, data):
            return
        if stream is Stream.SCHEDULES:
            if data.get("trigger") != "manual":
                lag = _seconds(data.get("scheduledAt"), data.get("firedAt"))
                if lag is not None:
                    self.fire_lag.observe(max(lag, 0.0))
            return
        final = _FINAL_EVENTS.get(kind)
        if final is None:
            return
        status = final.value
        self.runs_finished.labels(key, status).inc()
        ran = _seconds(data.get("runningAt"), data.get("finishedAt"))
        if ran is not None:
            self.run_duration.labels(key, status).observe(max(ran, 0.0))
        built = _seconds(data.get("buildingAt"), data.get("runningAt") or data.get("finishedAt"))
        if built is not None:
            self.build_duration.labels(key).observe(max(built, 0.0))


class _StoreCollector(Collector):
    """Yields the gauges of the last :meth:`AdminMetrics.refresh`."""

    def __init__(self, metrics: AdminMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # families depend on the collaborators; describe nothing, collect lazily

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.last_read
        tasks = GaugeMetricFamily(
            "longshore_queue_tasks", "Tasks per queue and state.", labels=["queue", "state"]
        )
        paused = GaugeMetricFamily(
            "longshore_queue_paused", "Whether a queue is paused (1) or not (0).", labels=["queue"]
        )
        completed = CounterMetricFamily(
            "longshore_queue_completed", "Tasks completed, per queue.", labels=["queue"]
        )
        failed = CounterMetricFamily(
            "longshore_queue_failed", "Failed task attempts, per queue.", labels=["queue"]
        )
        for info in snap.queues:
            for state in QUEUE_STATES:
                tasks.add_metric([info.name, state], getattr(info, state))
            paused.add_metric([info.name], int(info.paused))
            completed.add_metric([info.name], info.completed)
            failed.add_metric([info.name], info.failed)
        yield from (tasks, paused, completed, failed)
        yield GaugeMetricFamily(
            "longshore_dequeue_paused",
            "Whether dequeue is paused for every queue (1) or not (0).",
            value=int(snap.dequeue_paused),
        )
        yield GaugeMetricFamily("longshore_workers", "Registered workers.", value=snap.workers)
        if snap.unfinished_runs is not None:
            runs = GaugeMetricFamily(
                "longshore_runs_unfinished", "Runs not final yet, by status.", labels=["status"]
            )
            for status, count in snap.unfinished_runs.items():
                runs.add_metric([status], count)
            yield runs
        yield from retention_families(self._metrics.services.retention)
        runner = self._metrics.services.runner
        if runner is not None:
            yield from infra_families(runner.infra_waits)
        yield from last_success_family(snap.last_success)
        if snap.schedules is not None:
            schedules = GaugeMetricFamily(
                "longshore_schedules", "Schedules by status.", labels=["status"]
            )
            for status, count in snap.schedules.items():
                schedules.add_metric([status], count)
            yield schedules


def _seconds(start: object, end: object) -> float | None:
    """Seconds between two ISO 8601 strings of an event, ``None`` if either is missing."""
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (ValueError, TypeError):
        return None


def route_template(scope: Scope) -> str:
    """The template of the route that served ``scope`` with the prefixes of the routers it
    is mounted under (``/admin/v1/queues/{name}``), or :data:`UNMATCHED`.

    Depending on the FastAPI version, ``scope["route"]`` is either the route as mounted
    (its ``path`` holds every prefix) or as declared on its own router (without the prefix
    of the router that included it). The prefix is then the part of the request path
    before the suffix the route's own pattern matches: router prefixes are fixed strings
    here, so no value from the raw path ends up in the label.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    pattern = getattr(route, "path_regex", None)
    if not isinstance(template, str) or not isinstance(pattern, re.Pattern):
        return UNMATCHED
    path = str(scope.get("path", ""))
    for start in (i for i, char in enumerate(path) if char == "/"):
        if pattern.match(path[start:]):
            return path[:start] + template
    return template


def metrics_of(scope: Scope) -> AdminMetrics | None:
    """The metrics of the app serving ``scope``, made on first use; ``None`` outside an
    admin app (no ``admin_services`` in its state)."""
    app = scope.get("app")
    state = getattr(app, "state", None)
    if state is None:
        return None
    found: AdminMetrics | None = getattr(state, "admin_metrics", None)
    if found is None:
        services = getattr(state, "admin_services", None)
        if not isinstance(services, AdminServices):
            return None
        found = AdminMetrics(services)
        state.admin_metrics = found
    return found
