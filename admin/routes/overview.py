"""``GET /overview``: seed 003's ``stats``, ``coordination`` and ``actions`` in one cheap call.

Cheap at any backlog: per-queue counts come from the queue's one aggregate query
(``list_queues``; no task is listed), run counts from indexed counts, and the independent
reads run concurrently. The ``actions`` counters are kept incrementally from the audit log:
each call reads only the audit events appended since the previous one.

One overview is computed at a time per app and shared: callers that arrive meanwhile (UI
pollers, every open event stream) get the same body, and it is reused for up to
:data:`MAX_AGE_SECONDS` unless an audit entry was appended since (a mutation through the
API shows at once; work done by workers shows within that age).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from admin.auth import RequireViewer
from admin.deps import ServicesDep
from admin.schemas import epoch_ms, rfc3339
from admin.schemas_events import (
    OverviewActions,
    OverviewBody,
    OverviewCoordination,
    OverviewStats,
)
from admin.services import AdminServices
from store.events import AuditStatus, Event, EventFilter, EventStore, Stream
from store.jobs.models import RunStatus, RunTrigger
from store.jobs.protocol import RunStore
from store.queue.models import QueueInfo

router = APIRouter(tags=["overview"])

_AUDIT_ONLY = EventFilter(streams=frozenset({Stream.AUDIT}))
_PAGE = 1000
_ACTIVE_RUN_STATUSES = (RunStatus.FETCHING, RunStatus.BUILDING, RunStatus.RUNNING)
MAX_AGE_SECONDS = 1.0
"""How long a computed overview is reused when no audit entry arrived meanwhile."""
_MS = timedelta(milliseconds=1)
LATENCY_SAMPLE = 50
"""The queue latencies are measured over this many of the newest runs (a run row carries
its build log: the sample stays small because overviews are computed often)."""


class ActionTally:
    """Seed 003's pause/resume/replay counters, counted from accepted audit entries
    appended after the tally was created (one per app, on its first use)."""

    def __init__(self, events: EventStore | None) -> None:
        self._events = events
        self._after = 0 if events is None else events.last_id
        self.started_at = datetime.now(UTC)
        self.counts = {"pause": 0, "resume": 0, "replay": 0}
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """Count the audit entries appended since the last call; ``True`` if there were
        any."""
        if self._events is None:
            return False
        seen = False
        async with self._lock:
            while True:
                page = await self._events.since(self._after, _AUDIT_ONLY, _PAGE)
                for event in page:
                    kind = _action_kind(event)
                    if kind is not None:
                        self.counts[kind] += 1
                    self._after = event.id
                    seen = True
                if len(page) < _PAGE:
                    return seen


def _action_kind(event: Event) -> str | None:
    data = event.data
    if data.get("status") != AuditStatus.OK.value:
        return None
    action = data.get("action")
    if action == "dequeue.pause":
        return "pause"
    if action == "dequeue.resume":
        return "resume"
    if action == "queue.pause":
        return "pause" if data.get("detail") == "paused=true" else "resume"
    if action in ("dlq.replay", "dlq.replay_ids"):
        return "replay"
    return None


class OverviewCache:
    """The app's latest overview; see the module docstring."""

    def __init__(self, services: AdminServices) -> None:
        self._services = services
        self.tally = ActionTally(services.events)
        self._body: OverviewBody | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> OverviewBody:
        async with self._lock:
            changed = await self.tally.refresh()
            fresh = time.monotonic() - self._at < MAX_AGE_SECONDS
            # Without an event store no mutation can be seen: never reuse.
            if self._body is None or changed or not fresh or self._services.events is None:
                self._body = await build_overview(self._services, self.tally)
                self._at = time.monotonic()
            return self._body


def overview_of(request: Request, services: AdminServices) -> OverviewCache:
    """The app's :class:`OverviewCache`, created on first use."""
    state = request.app.state
    cache: OverviewCache | None = getattr(state, "admin_overview", None)
    if cache is None:
        cache = OverviewCache(services)
        state.admin_overview = cache
    return cache


async def _run_waits(runs: RunStore) -> tuple[int, int]:
    """The mean and 95th percentile, in ms, of how long the runs among the newest
    :data:`LATENCY_SAMPLE` waited from being queued to starting, ``(-1, -1)`` when
    none has started. Only runs asked for through the API count: they are recorded when
    queued, while a schedule's run is recorded when a worker takes its task (no wait to
    measure) and a retry waits its backoff on purpose."""
    page = await runs.list_runs(limit=LATENCY_SAMPLE, offset=0)
    waits = sorted(
        (started - run.queued_at) / _MS
        for run in page.items
        if run.trigger is RunTrigger.API
        and run.attempt == 1
        and (started := run.fetching_at or run.building_at or run.running_at) is not None
    )
    if not waits:
        return -1, -1
    p95 = waits[math.ceil(len(waits) * 0.95) - 1]
    return max(0, round(sum(waits) / len(waits))), max(0, round(p95))


async def _leader(services: AdminServices) -> str:
    """Who holds the scheduler leader lock (``none`` when nobody does)."""
    if services.schedules is None:
        return "none"
    holder = await services.schedules.leader()
    if holder is None:
        return "none"
    return holder or "held"


async def _count_runs(runs: RunStore, status: RunStatus) -> int:
    page = await runs.list_runs(status=status, limit=1, offset=0)
    return page.total


async def _none() -> None:
    return None


async def _no_waits() -> tuple[int, int]:
    return -1, -1


async def build_overview(services: AdminServices, tally: ActionTally) -> OverviewBody:
    """The overview body, now (``tally`` already refreshed)."""
    queue = services.queue
    reads: list[Awaitable[Any]] = [
        queue.list_queues(),
        queue.is_global_paused(),
        queue.list_workers(),
    ]
    runs = services.runs
    if runs is not None:
        reads.append(_count_runs(runs, RunStatus.QUEUED))
        reads.extend(_count_runs(runs, status) for status in _ACTIVE_RUN_STATUSES)
    schedules = services.schedules
    reads.append(
        _none() if schedules is None else schedules.list_views(limit=1, offset=0, last_fired=False)
    )
    waits, leader = await asyncio.gather(
        _no_waits() if runs is None else _run_waits(runs), _leader(services)
    )
    results = await asyncio.gather(*reads)
    queues: list[QueueInfo] = results[0]
    paused: bool = results[1]
    workers: list[Any] = results[2]
    counts = tally.counts
    queued_runs = active_runs = None
    if runs is not None:
        queued_runs = results[3]
        active_runs = sum(results[4 : 4 + len(_ACTIVE_RUN_STATUSES)])
    schedule_page = results[-1]

    ready = sum(info.ready for info in queues)
    scheduled = sum(info.scheduled for info in queues)
    running = sum(info.running for info in queues)
    caps = {
        info.name: info.concurrency_limit for info in queues if info.concurrency_limit is not None
    }
    now = datetime.now(UTC)
    return OverviewBody(
        stats=OverviewStats(
            active_workers=len(workers),
            queued_tasks=ready + scheduled,
            queues=len(queues),
            avg_latency_ms=waits[0],
            p95_latency_ms=waits[1],
            ready_tasks=ready,
            scheduled_tasks=scheduled,
            processing_tasks=running,
            dead_tasks=sum(info.dead for info in queues),
            completed_tasks=sum(info.completed for info in queues),
            failed_attempts=sum(info.failed for info in queues),
            active_runs=active_runs,
            queued_runs=queued_runs,
            schedules=None if schedule_page is None else schedule_page.total,
        ),
        coordination=OverviewCoordination(
            global_rate_limit=("none" if not caps else f"{len(caps)} queue concurrency cap(s)"),
            leader_lock=leader,
            lease=f"{running} running task lease(s)",
            paused=paused,
            paused_queues=[info.name for info in queues if info.paused],
            concurrency_limits=caps,
        ),
        actions=OverviewActions(
            pause=counts["pause"],
            resume=counts["resume"],
            replay=counts["replay"],
            since_ms=epoch_ms(tally.started_at) or 0,
            since=rfc3339(tally.started_at) or "",
        ),
        generated_at_ms=epoch_ms(now) or 0,
    )


@router.get("/overview", response_model=OverviewBody)
async def overview(request: Request, _: RequireViewer, services: ServicesDep) -> OverviewBody:
    """Queue, dead-letter, worker, run and schedule counts; dequeue pause state; admin
    action counters."""
    return await overview_of(request, services).get()
