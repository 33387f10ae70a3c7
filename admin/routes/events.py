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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette

from admin.auth import RequireViewer
from admin.deps import EventsDep, ServicesDep
from admin.errors import InvalidRequest
from admin.routes.overview import overview_of
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


class EventStreams:
    """The open streams of one app: :meth:`close` ends them all."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.open = 0

    def close(self) -> None:
        self.closing.set()


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


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned read's outcome as seen (no "exception never retrieved" noise)."""
    if not task.cancelled():
        task.exception()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _snapshot(name: str, body: Any) -> ServerSentEvent:
    return ServerSentEvent(event=name, raw_data=_dumps(body))


def _heartbeat() -> ServerSentEvent:
    return _snapshot("heartbeat", {"ts": int(time.time() * 1000)})


def _events_body(rows: Iterable[Schema]) -> dict[str, Any]:
    return {"events": [row.model_dump(mode="json", by_alias=True) for row in rows]}


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
        self._request = request
        self._services = services
        self._events = events
        self._sub = sub
        self._follow = follow
        self._options = options_of(request.app)
        self._streams = streams_of(request.app)
        self._sent: dict[str, str] = {}
        self._dirty: set[str] = set()
        self.last_id = sub.last_id

    async def run(self) -> AsyncGenerator[ServerSentEvent]:
        loop = asyncio.get_running_loop()
        options = self._options
        closing: asyncio.Future[Any] = asyncio.ensure_future(self._streams.closing.wait())
        pending: asyncio.Future[Any] | None = None
        self._streams.open += 1
        try:
            yield ServerSentEvent(comment="longshore events", retry=options.retry_ms)
            for item in await self._snapshots(SNAPSHOTS, force=True):
                yield item
            yield _heartbeat()
            now = loop.time()
            next_heartbeat = now + options.heartbeat_seconds
            next_overview = now + options.overview_interval_seconds
            last_snapshot = now
            while not closing.done():
                if pending is None:
                    pending = asyncio.ensure_future(self._sub.__anext__())
                due = min(next_heartbeat, next_overview)
                if self._dirty:
                    due = min(due, last_snapshot + options.snapshot_debounce_seconds)
                done, _ = await asyncio.wait(
                    {pending, closing},
                    timeout=max(0.0, due - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if closing in done:
                    return
                if pending in done:
                    finished, pending = pending, None
                    try:
                        event = finished.result()
                    except StopAsyncIteration:
                        return  # the event store closed
                    except SubscriberDropped as dropped:
                        self._resubscribe(dropped.last_id)
                        continue
                    self.last_id = event.id
                    self._mark(event)
                    if self._wanted(event):
                        yield ServerSentEvent(
                            id=str(event.id), event=event.type, raw_data=_dumps(event_json(event))
                        )
                now = loop.time()
                if now >= next_overview:
                    self._dirty.add("overview")
                    next_overview = now + options.overview_interval_seconds
                if self._dirty and now >= last_snapshot + options.snapshot_debounce_seconds:
                    names = [name for name in SNAPSHOTS if name in self._dirty]
                    self._dirty.clear()
                    for item in await self._snapshots(names):
                        yield item
                    last_snapshot = loop.time()
                if now >= next_heartbeat:
                    yield _heartbeat()
                    next_heartbeat = loop.time() + options.heartbeat_seconds
        finally:
            self._streams.open -= 1
            self._sub.close()  # a re-subscription's; the first is also closed by its dependency
            closing.cancel()
            if pending is not None:
                pending.cancel()
                pending.add_done_callback(_retrieve)

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
            if event.type != EventType.RUN_OUTPUT_EMITTED:
                self._dirty.update(("job_events", "overview"))
        elif event.stream is Stream.SCHEDULES:
            self._dirty.update(("schedule_events", "overview"))
        else:
            self._dirty.update(("audit_events", "overview"))

    async def _snapshots(
        self, names: Iterable[str], *, force: bool = False
    ) -> list[ServerSentEvent]:
        """The snapshot events among ``names`` whose content changed since last sent."""
        out: list[ServerSentEvent] = []
        for name in names:
            try:
                body = await self._snapshot_body(name)
            except Exception as exc:  # a failed read must not end the stream
                logger.warning(
                    "event stream snapshot failed", extra={"snapshot": name, "error": str(exc)}
                )
                out.append(_snapshot("error", {"snapshot": name, "message": str(exc)}))
                continue
            compared = body
            if name == "overview":
                compared = {k: v for k, v in body.items() if k != "generatedAtMs"}
            key = _dumps(compared)
            if force or self._sent.get(name) != key:
                self._sent[name] = key
                out.append(_snapshot(name, body))
        return out

    async def _snapshot_body(self, name: str) -> dict[str, Any]:
        services, limit = self._services, self._options.snapshot_limit
        if name == "overview":
            body = await overview_of(self._request, services).get()
            return body.model_dump(mode="json", by_alias=True)
        if name == "job_events":
            if services.runs is None:
                return {"events": []}
            page = await services.runs.list_runs(limit=limit, offset=0)
            return _events_body(JobEventRow.of(run) for run in page.items)
        if name == "schedule_events":
            return _events_body(ScheduleEventRow.of(e) for e in await self._schedule_events())
        entries = await services.audit.recent(AuditQuery(limit=limit))
        return _events_body(AuditRow.of(entry) for entry in entries)

    async def _schedule_events(self) -> list[Event]:
        """The newest schedule events across schedules (via the per-key index, so the
        cost grows with the number of schedules, not with the history)."""
        schedules, limit = self._services.schedules, self._options.snapshot_limit
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


Subscription = Annotated[EventSubscription, Depends(subscription)]


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={200: {"description": "Server-sent events (text/event-stream)"}},
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
) -> AsyncIterator[ServerSentEvent]:
    """The live event stream; see the module docstring for what it sends."""
    live = _LiveStream(request, services, events, sub, frozenset(follow or ()))
    async with contextlib.aclosing(live.run()) as items:
        async for item in items:
            yield item
    logger.debug("event stream ended", extra={"last_id": live.last_id})
