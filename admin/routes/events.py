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
3. Between them: a ``heartbeat`` every ``heartbeat_seconds``, and a snapshot event again
   whenever its content changed (checked at most once per ``snapshot_debounce_seconds``
   after an event that may change it; the overview and ``schedule_events``, which change
   with the queue too, also every ``overview_interval_seconds``); see
   :class:`~admin.streams.options.EventsStreamOptions`. The snapshot items are those of
   ``GET /jobs/events``, ``GET /schedules/events`` and ``GET /audit``
   (:mod:`admin.seed.items`).

Snapshots and heartbeats carry no ``id``, so they never move a client's resume point. The
resume point is the ``Last-Event-ID`` header or ``?lastEventId=``; without either, the
stream starts with the events appended after the connection.

A slow client never slows the service (its subscription is renewed from the last id sent
when the store drops it). The stream ends when the client goes away, when the event store
closes, or when :func:`admin.streams.end_event_streams` is called. The engine is
:mod:`admin.streams`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from admin.auth import RequireViewer
from admin.deps import EventsDep, ServicesDep
from admin.streams.event_stream import EventStream
from admin.streams.options import options_of
from admin.streams.reader import StreamSubscription
from admin.streams.response import SSE_ITEM_SCHEMA, EventStreamResponse, event_stream
from admin.streams.resume import ResumePoint

logger = logging.getLogger(__name__)

router = APIRouter(tags=["events"])


def _dropped(last_id: int) -> None:
    logger.info("event stream re-subscribing after a drop", extra={"last_id": last_id})


async def subscription(
    events: EventsDep, request: Request, after: ResumePoint
) -> AsyncIterator[StreamSubscription]:
    """The store subscription, opened before the response starts (a closed store is a 503,
    not a broken stream) and closed when the request ends."""
    start = events.last_id if after is None else after
    live = StreamSubscription(
        events, start, buffer=options_of(request.app).buffer, on_drop=_dropped
    )
    try:
        yield live
    finally:
        live.close()


Subscription = Annotated[StreamSubscription, Depends(subscription)]


@router.get(
    "/events",
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "Server-sent events (text/event-stream)",
            "content": {"text/event-stream": {"itemSchema": SSE_ITEM_SCHEMA}},
        }
    },
)
async def stream_events(
    request: Request,
    _: RequireViewer,
    services: ServicesDep,
    events: EventsDep,
    live: Subscription,
    follow: Annotated[
        list[str] | None, Query(description="Also send the output events of these runs")
    ] = None,
) -> EventStreamResponse:
    """The live event stream; see the module docstring for what it sends."""
    stream = EventStream(request, services, events, live, frozenset(follow or ()))
    return event_stream(stream.run())
