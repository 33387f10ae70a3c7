"""The snapshot events of ``/events`` and their computation, shared by all streams of an app.

Seed 003's snapshots: ``overview`` (the ``GET /overview`` body), ``job_events`` (the newest
runs), ``schedule_events`` (the newest firings across schedules) and ``audit_events`` (the
newest audit rows), each ``{"events": [...]}`` but the overview, with items built by the
same :class:`~admin.seed.items.SeedItems` as ``GET /jobs/events``, ``GET
/schedules/events`` and ``GET /audit`` (a seed client merges them into those). A
stream asks for one with a :class:`Need` (computed after the last event it saw, or after a
refresh was due); :class:`SnapshotCache` computes each at most once per debounce interval
for every stream, in a task of its own, so a stream keeps sending events while a snapshot
is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from admin.routes.overview import OverviewCache, build_overview
from admin.seed.items import SeedItems
from admin.services import AdminServices
from admin.streams.frames import dumps, frame
from store.background import TaskOwner
from store.events import AuditQuery, EventStore

logger = logging.getLogger(__name__)

SNAPSHOTS = ("overview", "job_events", "schedule_events", "audit_events")
"""The snapshot events, in the order a stream sends them."""


@dataclass(frozen=True)
class Need:
    """What a stream requires of a snapshot before it stops asking: computed after it
    saw event ``min_id`` and started at or after loop time ``min_time``."""

    min_id: int = 0
    min_time: float = float("-inf")

    def merge(self, other: Need) -> Need:
        return Need(max(self.min_id, other.min_id), max(self.min_time, other.min_time))


@dataclass(frozen=True)
class Snapshot:
    """One computed snapshot: its SSE frame, and the key streams compare (``None`` for a
    failed read: its ``error`` frame is always sent)."""

    name: str
    seen_id: int
    """The event store's last id when the computation started."""
    started: float
    """Loop time when the computation started."""
    frame: bytes
    key: bytes | None

    def satisfies(self, need: Need) -> bool:
        return self.seen_id >= need.min_id and self.started >= need.min_time


class SnapshotCache:
    """Snapshot bodies shared by the streams of one app: each is computed at most once per
    ``snapshot_debounce_seconds`` (the ``interval`` argument), in a task of its own; every
    stream that asks meanwhile shares the computation in flight (:meth:`get` awaits it,
    :meth:`peek` asks to be woken when it is done, so a stream keeps sending events while a
    snapshot is read)."""

    def __init__(
        self,
        services: AdminServices,
        events: EventStore,
        overview: OverviewCache,
        items: SeedItems,
    ) -> None:
        self._services = services
        self._events = events
        self._overview = overview
        self._items = items
        self._tasks = TaskOwner("event-snapshots")
        self._latest: dict[str, Snapshot] = {}
        self._running: dict[str, asyncio.Task[Snapshot]] = {}
        self._waiters: dict[str, set[Callable[[], None]]] = {}
        self._started: dict[str, float] = {}
        self.computed: dict[str, int] = {}
        """How many computations of each snapshot ran (tests look)."""

    def next_allowed(self, name: str, interval: float) -> float:
        """Loop time from which a new computation of ``name`` may start: ``interval``
        after the last one started."""
        return self._started.get(name, float("-inf")) + interval

    def running(self, name: str) -> bool:
        return name in self._running

    async def get(
        self, name: str, need: Need, *, interval: float, limit: int, force: bool = False
    ) -> Snapshot | None:
        """A snapshot that satisfies ``need``; else, when no computation may start yet,
        ``None`` (or, with ``force``, the latest one: the caller asks again later)."""
        # Shielded: a stream that goes away must not cancel what the others wait for.
        while (running := self._running.get(name)) is not None:
            done = await asyncio.shield(running)
            if done.satisfies(need):
                return done
        latest = self._latest.get(name)
        if latest is not None and latest.satisfies(need):
            return latest
        if latest is None or self._may_start(name, interval):
            return await asyncio.shield(self._start(name, limit))
        return latest if force else None

    def peek(
        self, name: str, need: Need, wake: Callable[[], None], *, interval: float, limit: int
    ) -> Snapshot | None:
        """A snapshot that satisfies ``need`` if there is one now; else ``None``, after
        starting a computation if one may start, and ``wake`` is called when the one in
        flight is done (without one in flight, ask again at :meth:`next_allowed`)."""
        latest = self._latest.get(name)
        if latest is not None and latest.satisfies(need):
            return latest
        if name not in self._running and (latest is None or self._may_start(name, interval)):
            self._start(name, limit)
        if name in self._running:
            self._waiters.setdefault(name, set()).add(wake)
        return None

    async def close(self) -> None:
        """Cancel and await the computations still running (no stream is left)."""
        await self._tasks.close()

    def _may_start(self, name: str, interval: float) -> bool:
        return asyncio.get_running_loop().time() >= self.next_allowed(name, interval)

    def _start(self, name: str, limit: int) -> asyncio.Task[Snapshot]:
        now = asyncio.get_running_loop().time()
        self._started[name] = now
        task = self._tasks.spawn(self._compute(name, now, limit), name=f"snapshot-{name}")
        self._running[name] = task
        return task

    async def _compute(self, name: str, started: float, limit: int) -> Snapshot:
        seen_id = self._events.last_id
        try:
            snapshot = await self._snapshot(name, seen_id, started, limit)
            self._latest[name] = snapshot
            return snapshot
        finally:
            self.computed[name] = self.computed.get(name, 0) + 1
            self._running.pop(name, None)
            for wake in self._waiters.pop(name, ()):
                wake()

    async def _snapshot(self, name: str, seen_id: int, started: float, limit: int) -> Snapshot:
        try:
            body = await self._body(name, limit)
        except Exception as exc:  # a failed read must not end the streams
            logger.warning(
                "event stream snapshot failed", extra={"snapshot": name, "error": str(exc)}
            )
            failed = frame("error", dumps({"snapshot": name, "message": str(exc)}))
            return Snapshot(name, seen_id, started, failed, None)
        compared = body
        if name == "overview":
            compared = {k: v for k, v in body.items() if k != "generatedAtMs"}
        key = dumps(compared).encode()
        return Snapshot(name, seen_id, started, frame(name, dumps(body)), key)

    async def _body(self, name: str, limit: int) -> dict[str, Any]:
        if name == "overview":
            # Not the overview cache's body, which may predate the event being reacted to.
            await self._overview.tally.refresh()
            body = await build_overview(self._services, self._overview.tally)
            return body.model_dump(mode="json", by_alias=True)
        items = self._items
        if name == "job_events":
            return {"events": await items.job_events(None, limit)}
        if name == "schedule_events":
            return {"events": await items.schedule_events(None, limit)}
        return {"events": await items.audit_events(AuditQuery(limit=limit))}
