"""``GET /events``: the live stream (SSE) of stored events, snapshots and heartbeats.

What a client receives, in this order:

1. ``retry: <ms>`` (the reconnect hint), then the seed 003 snapshot events ``overview``
   (the ``GET /overview`` body), ``job_events``, ``schedule_events`` and ``audit_events``
   (each ``{"events": [latest 25]}``), then a ``heartbeat`` (``{"ts": <epoch ms>}``).
2. Every event stored after the resume point, then every event as it is appended, in id
   order without gap or duplicate: SSE ``id`` = the durable event id, ``event`` = the event
   type (``RunStarted``, ``ScheduleFired``, ``AuditRecorded``, ...), ``data`` = the event as
   JSON (``{"id", "stream", "key", "type", "atMs", "at", "runId"?, "data"}``). Run output
   events (``RunOutputEmitted``) are sent only for the runs named by ``?follow=<runId>``.
3. Between them: a ``heartbeat`` every :attr:`EventsStreamOptions.heartbeat_seconds`, and a
   snapshot event again whenever its content changed (checked at most once per
   ``snapshot_debounce_seconds`` after an event that may change it; the overview, which
   changes with the queue rather than with events, also every
   ``overview_interval_seconds``).

Snapshots and heartbeats carry no ``id``, so they never move a client's resume point. The
resume point is the ``Last-Event-ID`` header (sent by browsers when they reconnect) or
``?lastEventId=``; without either, the stream starts with the events appended after the
connection. Ids are the event store's, so resuming works across restarts of the service.

A slow client never slows the service: the store's subscription buffer is bounded and,
when it overflows, the stream re-subscribes from the last id it sent (the rest is read
back from disk). The stream ends when the client goes away, when the event store closes,
or when :func:`end_event_streams` is called (the server's owner calls it before stopping
the server so that open streams do not hold up the shutdown).

Cost with many clients (``bench/api.py``: 200 streams): the work that does not depend on
the client is done once per app and shared. Each event's SSE frame is encoded once
(:class:`FrameCache`); each snapshot body is computed at most once per
``snapshot_debounce_seconds`` for all streams (:class:`SnapshotCache`: a stream that needs
a newer one than the last computed is woken when the next computation, which all waiting
streams share, is done; it keeps sending events meanwhile). A stream wakes once per
batch of ready events (it awaits one, then takes what else is ready without waiting) and
writes the batch as one chunk, straight to the ASGI server (no per-event task, no
per-event encoding).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from admin.auth import RequireViewer
from admin.deps import EventsDep, ServicesDep
from admin.errors import InvalidRequest
from admin.routes.overview import OverviewCache, build_overview, overview_of
from admin.schemas import Schema
from admin.schemas_events import AuditRow, JobEventRow, ScheduleEventRow, event_json
from admin.services import AdminServices
from store.events import (
    AuditQuery,
    Event,
    EventStore,
    EventSubscription,
    EventType,
    Stream,
    SubscriberDropped,
)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["events"])

SNAPSHOTS = ("overview", "job_events", "schedule_events", "audit_events")
MAX_SCHEDULES_SCANNED = 200
"""``schedule_events`` merges the newest events of at most this many schedules."""
BATCH = 500
"""At most this many events are written to a stream in one chunk."""
FRAME_CACHE_SIZE = 4096
"""Encoded event frames kept per app (the newest; an evicted one is encoded again)."""


@dataclass(kw_only=True)
class EventsStreamOptions:
    """Timing of the live stream; set ``app.state.events_stream_options`` to change it
    (tests shorten the intervals)."""

    heartbeat_seconds: float = 15.0
    snapshot_debounce_seconds: float = 1.0
    overview_interval_seconds: float = 5.0
    retry_ms: int = 3000
    snapshot_limit: int = 25
    buffer: int = 0
    """Per-client subscription buffer (events); 0 is the event store's default."""


def options_of(app: Starlette) -> EventsStreamOptions:
    found = getattr(app.state, "events_stream_options", None)
    return found if isinstance(found, EventsStreamOptions) else EventsStreamOptions()


# --- encoding ---------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _frame(event: str, data: str, event_id: int | None = None) -> bytes:
    """One SSE message. ``data`` is compact JSON, so it is one line (JSON escapes CR/LF)."""
    if event_id is None:
        return f"event: {event}\ndata: {data}\n\n".encode()
    return f"event: {event}\ndata: {data}\nid: {event_id}\n\n".encode()


def _heartbeat() -> bytes:
    return _frame("heartbeat", _dumps({"ts": int(time.time() * 1000)}))


def _events_body(rows: Iterable[Schema]) -> dict[str, Any]:
    return {"events": [row.model_dump(mode="json", by_alias=True) for row in rows]}


class FrameCache:
    """The encoded SSE frames of the latest events, shared by the streams of one app (each
    event is encoded once, not once per client)."""

    def __init__(self, size: int = FRAME_CACHE_SIZE) -> None:
        self._size = size
        self._frames: dict[int, bytes] = {}

    def frame(self, event: Event) -> bytes:
        frames = self._frames
        found = frames.get(event.id)
        if found is None:
            found = _frame(event.type, _dumps(event_json(event)), event.id)
            frames[event.id] = found
            if len(frames) > self._size:
                del frames[next(iter(frames))]  # the oldest inserted
        return found

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, event_id: int) -> bool:
        return event_id in self._frames


# --- snapshots --------------------------------------------------------------------------------


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

    def __init__(self, services: AdminServices, events: EventStore, overview: OverviewCache):
        self._services = services
        self._events = events
        self._overview = overview
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

    def _may_start(self, name: str, interval: float) -> bool:
        return asyncio.get_running_loop().time() >= self.next_allowed(name, interval)

    def _start(self, name: str, limit: int) -> asyncio.Task[Snapshot]:
        now = asyncio.get_running_loop().time()
        self._started[name] = now
        task = asyncio.create_task(self._compute(name, now, limit))
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
            frame = _frame("error", _dumps({"snapshot": name, "message": str(exc)}))
            return Snapshot(name, seen_id, started, frame, None)
        compared = body
        if name == "overview":
            compared = {k: v for k, v in body.items() if k != "generatedAtMs"}
        key = _dumps(compared).encode()
        return Snapshot(name, seen_id, started, _frame(name, _dumps(body)), key)

    async def _body(self, name: str, limit: int) -> dict[str, Any]:
        services = self._services
        if name == "overview":
            # Not the overview cache's body, which may predate the event being reacted to.
            await self._overview.tally.refresh()
            body = await build_overview(services, self._overview.tally)
            return body.model_dump(mode="json", by_alias=True)
        if name == "job_events":
            if services.runs is None:
                return {"events": []}
            page = await services.runs.list_runs(limit=limit, offset=0)
            return _events_body(JobEventRow.of(run) for run in page.items)
        if name == "schedule_events":
            return _events_body(ScheduleEventRow.of(e) for e in await self._schedule_events(limit))
        entries = await services.audit.recent(AuditQuery(limit=limit))
        return _events_body(AuditRow.of(entry) for entry in entries)

    async def _schedule_events(self, limit: int) -> list[Event]:
        """The newest schedule events across schedules (via the per-key index, so the
        cost grows with the number of schedules, not with the history)."""
        schedules = self._services.schedules
        if schedules is None:
            return []
        page = await schedules.list_views(limit=MAX_SCHEDULES_SCANNED, offset=0)
        names = [view.schedule.name for view in page.items]
        found = await asyncio.gather(
            *(self._events.latest(Stream.SCHEDULES, name, limit) for name in names)
        )
        merged = [event for events in found for event in events]
        merged.sort(key=lambda event: event.id, reverse=True)
        return merged[:limit]


# --- the app's streams ------------------------------------------------------------------------


class EventStreams:
    """The open streams of one app and what they share: :meth:`close` ends them all."""

    def __init__(self) -> None:
        self.closed = False
        self.frames = FrameCache()
        self.snapshots: SnapshotCache | None = None
        self._live: set[_LiveStream] = set()
        self._held: set[EventSubscription] = set()

    @property
    def open(self) -> int:
        """How many streams are open."""
        return len(self._live)

    def close(self) -> None:
        """End every open stream now and every one opened later."""
        self.closed = True
        for live in tuple(self._live):
            live.end()
        for subscription in tuple(self._held):
            subscription.close()

    def hold(self, subscription: EventSubscription) -> None:
        """Close ``subscription`` too when the streams end (the subscriptions of other
        routes' streams, e.g. a followed run's output); closed at once after :meth:`close`."""
        self._held.add(subscription)
        if self.closed:
            subscription.close()

    def release(self, subscription: EventSubscription) -> None:
        self._held.discard(subscription)

    def snapshot_cache(
        self, request: Request, services: AdminServices, events: EventStore
    ) -> SnapshotCache:
        if self.snapshots is None:
            self.snapshots = SnapshotCache(services, events, overview_of(request, services))
        return self.snapshots

    def _add(self, live: _LiveStream) -> None:
        self._live.add(live)
        if self.closed:
            live.end()

    def _remove(self, live: _LiveStream) -> None:
        self._live.discard(live)


def streams_of(app: Starlette) -> EventStreams:
    streams: EventStreams | None = getattr(app.state, "admin_event_streams", None)
    if streams is None:
        streams = EventStreams()
        app.state.admin_event_streams = streams
    return streams


def end_event_streams(app: FastAPI) -> None:
    """End every open ``/events`` stream of ``app`` now (and any opened later): call it
    before stopping the server, which otherwise waits for streams to end."""
    streams_of(app).close()


# --- request parameters -----------------------------------------------------------------


def _parse_id(raw: str, name: str) -> int:
    text = raw.strip()
    if not text.isdigit():
        raise InvalidRequest(f"{name}: must be an event id (a non-negative integer), got {raw!r}")
    return int(text)


def resume_point(
    request: Request,
    last_event_id: Annotated[
        str | None,
        Query(alias="lastEventId", description="Resume after this event id"),
    ] = None,
) -> int | None:
    """The id to resume after: the ``Last-Event-ID`` header, else ``?lastEventId=``."""
    header = request.headers.get("last-event-id", "").strip()
    if header:
        return _parse_id(header, "Last-Event-ID")
    if last_event_id is not None and last_event_id.strip():
        return _parse_id(last_event_id, "lastEventId")
    return None


async def subscription(
    events: EventsDep,
    request: Request,
    after: Annotated[int | None, Depends(resume_point)],
) -> AsyncIterator[EventSubscription]:
    """The store subscription, opened before the response starts (a closed store is a 503,
    not a broken stream) and closed when the request ends."""
    start = events.last_id if after is None else after
    sub = events.subscribe(start, buffer=options_of(request.app).buffer)
    try:
        yield sub
    finally:
        sub.close()


# --- the stream ---------------------------------------------------------------------------


class _LiveStream:
    """One client's stream; see the module docstring."""

    def __init__(
        self,
        request: Request,
        services: AdminServices,
        events: EventStore,
        sub: EventSubscription,
        follow: frozenset[str],
    ) -> None:
        self._events = events
        self._sub = sub
        self._follow = follow
        self._options = options_of(request.app)
        self._streams = streams_of(request.app)
        self._frames = self._streams.frames
        self._snapshots = self._streams.snapshot_cache(request, services, events)
        self._sent: dict[str, bytes | None] = {}
        self._need: dict[str, Need] = {}
        self._waiting: set[str] = set()
        """Needed snapshots being computed: :meth:`_poke` is called when done."""
        self._poked = False
        self._timeout: asyncio.Timeout | None = None
        self._ending = False
        self.last_id = sub.last_id

    def end(self) -> None:
        """End the stream at its next wake-up (which this causes)."""
        self._ending = True
        self._sub.close()

    async def run(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        options = self._options
        self._streams._add(self)
        try:
            now = loop.time()
            connect = Need(self._events.last_id, now - options.snapshot_debounce_seconds)
            self._need = dict.fromkeys(SNAPSHOTS, connect)
            head = [f": longshore events\nretry: {options.retry_ms}\n\n".encode()]
            head.extend(await self._connect_snapshots())
            head.append(_heartbeat())
            yield b"".join(head)
            now = loop.time()
            next_heartbeat = now + options.heartbeat_seconds
            next_overview = now + options.overview_interval_seconds
            while not self._ending:
                due = min(next_heartbeat, next_overview, self._snapshot_due())
                batch = await self._next_batch(due)
                if batch is None or self._ending:
                    return
                out = [self._frames.frame(e) for e in batch if self._wanted(e)]
                now = loop.time()
                if now >= next_overview:
                    self._want("overview", Need(min_time=now))
                    next_overview = now + options.overview_interval_seconds
                if self._need and now >= self._snapshot_due():
                    out.extend(self._changed_snapshots())
                if now >= next_heartbeat:
                    out.append(_heartbeat())
                    next_heartbeat = loop.time() + options.heartbeat_seconds
                if out:
                    yield b"".join(out) if len(out) > 1 else out[0]
        finally:
            self._streams._remove(self)
            self._sub.close()  # a re-subscription's; the first is also closed by its dependency

    async def _next_batch(self, due: float) -> list[Event] | None:
        """The events ready now, else those that arrive before loop time ``due`` (waiting
        for the first, then taking what else is ready); ``None`` when the subscription
        ended."""
        sub = self._sub
        batch = sub.ready(BATCH)
        if batch:
            await asyncio.sleep(0)  # let the server (and the other streams) run
        elif due > asyncio.get_running_loop().time():
            try:
                async with asyncio.timeout_at(due) as self._timeout:
                    first = await sub.__anext__()
            except TimeoutError:
                return []
            except StopAsyncIteration:
                return None  # the event store closed, or end()
            except SubscriberDropped as dropped:
                self._resubscribe(dropped.last_id)
                return []
            finally:
                self._timeout = None
            batch = [first, *sub.ready(BATCH - 1)]
        if batch:
            self.last_id = batch[-1].id
            for event in batch:
                self._mark(event)
        return batch

    def _resubscribe(self, last_id: int) -> None:
        """After a drop for reading too slowly: continue from the last id sent (the store
        replays what the dropped subscription missed)."""
        logger.info("event stream re-subscribing after a drop", extra={"last_id": last_id})
        self._sub.close()
        self._sub = self._events.subscribe(max(last_id, self.last_id), buffer=self._options.buffer)

    def _wanted(self, event: Event) -> bool:
        if event.type == EventType.RUN_OUTPUT_EMITTED:
            return event.run_id is not None and event.run_id in self._follow
        return True

    def _mark(self, event: Event) -> None:
        if event.stream is Stream.RUNS:
            if event.type == EventType.RUN_OUTPUT_EMITTED:
                return
            names: tuple[str, ...] = ("job_events", "overview")
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
        timeout = self._timeout
        if timeout is not None and not timeout.expired():
            timeout.reschedule(asyncio.get_running_loop().time())

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
        (so that, as before, an ``overview`` never arrives after the ``audit_events`` of
        the same change)."""
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


Subscription = Annotated[EventSubscription, Depends(subscription)]


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` body written as the stream produces it (no buffering by
    proxies: ``X-Accel-Buffering: no``). The media type is given per response, not as a
    class attribute, so that the OpenAPI document describes the body by the route's
    ``responses`` only (the SSE item schema, as FastAPI's ``EventSourceResponse`` does)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # When the client leaves while a chunk is being sent, the generator is
            # suspended at its ``yield``: close it now (not when it is garbage collected).
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


_SSE_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


@router.get(
    "/events",
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "Server-sent events (text/event-stream)",
            "content": {"text/event-stream": {"itemSchema": _SSE_ITEM_SCHEMA}},
        }
    },
)
async def stream_events(
    request: Request,
    _: RequireViewer,
    services: ServicesDep,
    events: EventsDep,
    sub: Subscription,
    follow: Annotated[
        list[str] | None, Query(description="Also send the output events of these runs")
    ] = None,
) -> EventStreamResponse:
    """The live event stream; see the module docstring for what it sends."""
    live = _LiveStream(request, services, events, sub, frozenset(follow or ()))
    return EventStreamResponse(
        live.run(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
