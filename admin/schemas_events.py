"""Bodies of the audit, overview and live-event routes (camelCase JSON, seed 003 shapes).

Seed 003 names kept: audit rows (``atMs, actor, requestId, action, target, status,
payloadHash, detail``) in ``{"events": [...]}``; the overview's ``stats``, ``coordination``
and ``actions`` objects; the stream's snapshot events ``{"events": [...]}`` and heartbeat
``{"ts": ms}``. Longshore's additions sit beside them (a seed client ignores them).
"""

from __future__ import annotations

from typing import Any

from admin.schemas import Schema, epoch_ms, rfc3339
from store.events import AuditEntry, Event

# --- audit ------------------------------------------------------------------------------


class AuditRow(Schema):
    """One audit entry; ``id`` is its durable event id (the SSE id of its live event)."""

    id: int
    at_ms: int
    at: str
    actor: str
    request_id: str
    action: str
    target: str
    status: str
    payload_hash: str
    detail: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditRow:
        return cls(
            id=entry.id,
            at_ms=epoch_ms(entry.at) or 0,
            at=rfc3339(entry.at) or "",
            actor=entry.actor,
            request_id=entry.request_id,
            action=entry.action,
            target=entry.target,
            status=entry.status.value,
            payload_hash=entry.payload_hash,
            detail=entry.detail,
        )


class AuditList(Schema):
    """``GET /audit``: newest first, at most ``limit`` rows."""

    events: list[AuditRow]
    limit: int


# --- overview ---------------------------------------------------------------------------


class OverviewStats(Schema):
    """Seed 003: ``activeWorkers, queuedTasks, queues, avgLatencyMs, p95LatencyMs``;
    the rest is Longshore's."""

    active_workers: int
    queued_tasks: int
    """Waiting tasks: ready now plus scheduled for later."""
    queues: int
    avg_latency_ms: int
    """How long runs waited from being queued to starting (mean, ms), among the newest 50
    runs, those asked for through the API; ``-1`` when none has started."""
    p95_latency_ms: int
    """The 95th percentile of the same waits; ``-1`` when none has started."""
    ready_tasks: int
    scheduled_tasks: int
    processing_tasks: int
    """Tasks running now (seed 003's "processing counts")."""
    dead_tasks: int
    """The dead-letter queue's size."""
    completed_tasks: int
    failed_attempts: int
    active_runs: int | None
    """Job runs fetching, building or running; ``null`` without a run store."""
    queued_runs: int | None
    schedules: int | None
    """Defined schedules; ``null`` without a schedule manager."""


class OverviewCoordination(Schema):
    """Seed 003: ``globalRateLimit, leaderLock, lease, paused`` (the strings are for
    display)."""

    global_rate_limit: str
    leader_lock: str
    """The scheduler instance holding the leader lock (``host:pid``), or ``none``."""
    lease: str
    paused: bool
    """Whether dequeue is paused globally (``POST /pause``)."""
    paused_queues: list[str]
    concurrency_limits: dict[str, int]
    """Queues whose tasks may only run so many at once across all workers."""


class OverviewActions(Schema):
    """Seed 003's admin action counters, counted from the audit log (accepted calls only)
    since this API process started counting (its first overview)."""

    pause: int
    resume: int
    replay: int
    since_ms: int
    since: str


class OverviewBody(Schema):
    stats: OverviewStats
    coordination: OverviewCoordination
    actions: OverviewActions
    generated_at_ms: int


# --- live stream ------------------------------------------------------------------------


def event_json(event: Event) -> dict[str, Any]:
    """The ``data`` of a stored event on the stream: ``{"id", "stream", "key", "type",
    "atMs", "at", "runId"?, "data"}``."""
    out = event.to_json()
    out["at"] = rfc3339(event.at)
    return out


class Heartbeat(Schema):
    ts: int
