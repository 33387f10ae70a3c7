"""One client's ``GET /events`` stream: stored events, snapshots when they change, heartbeats.

The stream follows the store through its :class:`~admin.streams.reader.StreamSubscription`
and, between batches of events, sends what is due: a ``heartbeat`` every
``heartbeat_seconds``, and a snapshot again when an event that may change it arrived (or,
for the overview, every ``overview_interval_seconds``) and its content changed. It never
waits for a snapshot: it asks the app's :class:`~admin.streams.snapshots.SnapshotCache` and
is woken when the computation it waits for is done. Each event's frame comes from the
app's :class:`~admin.streams.frames.FrameCache`; what a wake-up produces is written as one
chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request

from admin.services import AdminServices
from admin.streams.frames import heartbeat, preamble
from admin.streams.hub import streams_of
from admin.streams.options import options_of
from admin.streams.reader import StreamSubscription
from admin.streams.snapshots import SNAPSHOTS, Need
from store.events import Event, EventStore, EventType, Stream


class EventStream:
    """One client's ``/events`` stream; :meth:`run` produces its bytes."""

    def __init__(
        self,
        request: Request,
        services: AdminServices,
        events: EventStore,
        live: StreamSubscription,
        follow: frozenset[str],
    ) -> None:
        self._events = events
        self._live = live
        self._follow = follow
        self._options = options_of(request.app)
        self._hub = streams_of(request.app)
        self._frames = self._hub.frames
        self._snapshots = self._hub.snapshot_cache(request, services, events)
        self._sent: dict[str, bytes | None] = {}
        self._need: dict[str, Need] = {}
        self._waiting: set[str] = set()
        """Needed snapshots being computed: :meth:`_poke` is called when done."""
        self._poked = False

    async def run(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        options, live = self._options, self._live
        with self._hub.following(live):
            try:
                now = loop.time()
                connect = Need(self._events.last_id, now - options.snapshot_debounce_seconds)
                self._need = dict.fromkeys(SNAPSHOTS, connect)
                head = [preamble("longshore events", options.retry_ms)]
                head.extend(await self._connect_snapshots())
                head.append(heartbeat())
                yield b"".join(head)
                now = loop.time()
                next_heartbeat = now + options.heartbeat_seconds
                next_overview = now + options.overview_interval_seconds
                while True:
                    due = min(next_heartbeat, next_overview, self._snapshot_due())
                    batch = await live.next_batch(due)
                    if batch is None:
                        return
                    for event in batch:
                        self._mark(event)
                    out = [self._frames.frame(e) for e in batch if self._wanted(e)]
                    now = loop.time()
                    if now >= next_overview:
                        # Queue work shows in both without an event (a task that finished).
                        self._want("overview", Need(min_time=now))
                        self._want("schedule_events", Need(min_time=now))
                        next_overview = now + options.overview_interval_seconds
                    if self._need and now >= self._snapshot_due():
                        out.extend(self._changed_snapshots())
                    if now >= next_heartbeat:
                        out.append(heartbeat())
                        next_heartbeat = loop.time() + options.heartbeat_seconds
                    if out:
                        yield b"".join(out) if len(out) > 1 else out[0]
            finally:
                live.close()  # a re-subscription's; the first is also closed by the route

    def _wanted(self, event: Event) -> bool:
        if event.type == EventType.RUN_OUTPUT_EMITTED:
            return event.run_id is not None and event.run_id in self._follow
        return True

    def _mark(self, event: Event) -> None:
        if event.stream is Stream.RUNS:
            if event.type == EventType.RUN_OUTPUT_EMITTED:
                return
            # A firing's item shows the state of the run it became.
            names: tuple[str, ...] = ("job_events", "schedule_events", "overview")
        elif event.stream is Stream.SCHEDULES:
            names = ("schedule_events", "overview")
        else:
            names = ("audit_events", "overview")
        need = Need(event.id)
        for name in names:
            self._want(name, need)

    def _want(self, name: str, need: Need) -> None:
        found = self._need.get(name)
        self._need[name] = need if found is None else found.merge(need)

    def _snapshot_due(self) -> float:
        """Loop time of the next snapshot check (infinity when none is needed or all the
        needed ones are being computed)."""
        if self._poked:
            return float("-inf")
        waiting, interval = self._waiting, self._options.snapshot_debounce_seconds
        return min(
            (
                self._snapshots.next_allowed(name, interval)
                for name in self._need
                if name not in waiting
            ),
            default=float("inf"),
        )

    def _poke(self) -> None:
        """A snapshot this stream waits for is computed: check now (ends the wait)."""
        self._poked = True
        self._live.wake()

    async def _connect_snapshots(self) -> list[bytes]:
        """Every snapshot, waiting for them if need be (the latest one computed if a new
        one may not start yet: the newer one follows when it may)."""
        options, out = self._options, []
        for name in SNAPSHOTS:
            need = self._need[name]
            snapshot = await self._snapshots.get(
                name,
                need,
                interval=options.snapshot_debounce_seconds,
                limit=options.snapshot_limit,
                force=True,
            )
            assert snapshot is not None  # forced
            if snapshot.satisfies(need):
                del self._need[name]
            self._sent[name] = snapshot.key
            out.append(snapshot.frame)
        return out

    def _changed_snapshots(self) -> list[bytes]:
        """The frames of the needed snapshots that changed since last sent, in
        :data:`SNAPSHOTS` order, among those available now: the others start computing or
        wait until one may start, and while one is computing the later ones wait for it
        (so that an ``overview`` never arrives after the ``audit_events`` of the same
        change)."""
        options, cache, out = self._options, self._snapshots, []
        self._poked = False
        self._waiting.clear()
        computing = False
        for name in SNAPSHOTS:
            need = self._need.get(name)
            if need is None:
                continue
            snapshot = cache.peek(
                name,
                need,
                self._poke,
                interval=options.snapshot_debounce_seconds,
                limit=options.snapshot_limit,
            )
            if snapshot is None and cache.running(name):
                computing = True
            if computing:
                self._waiting.add(name)  # poked when the computation is done
                continue
            if snapshot is None:
                continue
            del self._need[name]
            if snapshot.key is None or self._sent.get(name) != snapshot.key:
                self._sent[name] = snapshot.key
                out.append(snapshot.frame)
        return out
