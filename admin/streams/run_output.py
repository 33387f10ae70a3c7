"""One client's followed run output (``GET /runs/{id}/output?follow=true``).

A comment naming the run and the ``retry`` hint, then the run's events after the resume
point, each with its durable event id: ``output`` (``{text, seq, offset, bytes}``),
``status`` (a stage entered), and last ``end`` (the final status, exit code and error),
after which the stream ends. A finished run's stored events are read page by page; a run
still going is followed live through a :class:`~admin.streams.reader.StreamSubscription`
registered with the app's :class:`~admin.streams.hub.StreamHub`, so it ends (without
``end``: the client resumes by id) when the app's streams are ended for a shutdown. A quiet
stream sends a keep-alive comment every ``keepalive_seconds`` and re-reads the run record
every ``idle_check_seconds``, to end the stream of a run that finished without its final
event reaching the event store (an ``end`` made from the record, without id).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from admin.run_errors import shown_error
from admin.streams.frames import KEEPALIVE, dumps, frame, preamble
from admin.streams.hub import StreamHub
from admin.streams.reader import StreamSubscription
from store.events import Event, EventFilter, EventStore, EventType, Stream
from store.jobs.models import Run
from store.jobs.protocol import RunStore

EVENT_PAGE: Final = 1000
"""A run's stored events are read this many at a time."""

OUTPUT: Final = EventType.RUN_OUTPUT_EMITTED.value
_ENDS: Final = frozenset(
    {
        EventType.RUN_SUCCEEDED.value,
        EventType.RUN_FAILED.value,
        EventType.RUN_TIMED_OUT.value,
        EventType.RUN_CANCELLED.value,
    }
)
_END_FIELDS: Final = (
    "status",
    "exitCode",
    "error",
    "finishedAt",
    "outputBytes",
    "outputTruncated",
)


@dataclass(frozen=True, kw_only=True)
class FollowTiming:
    """How a followed output stream paces itself."""

    retry_ms: int
    """The reconnection delay suggested to the client."""
    idle_check_seconds: float
    """How long without an event before the run record is read again."""
    keepalive_seconds: float
    """How long without a message before a keep-alive comment is sent."""


async def follow_run_output(
    events: EventStore,
    runs: RunStore,
    run: Run,
    *,
    after_id: int,
    hub: StreamHub,
    timing: FollowTiming,
    on_drop: Callable[[int], None],
) -> AsyncIterator[bytes]:
    """The bytes of the stream (see the module docstring): events after ``after_id``."""
    yield preamble(f"run {run.run_id}", timing.retry_ms)
    if run.status.is_final:
        async for chunk in _stored(events, run, after_id):
            yield chunk
        return
    live = StreamSubscription(
        events,
        after_id,
        event_filter=EventFilter(streams=frozenset({Stream.RUNS}), run_id=run.run_id),
        on_drop=on_drop,
    )
    try:
        with hub.following(live):
            async for chunk in _live(live, runs, run, timing):
                yield chunk
    finally:
        live.close()


async def _stored(events: EventStore, run: Run, after_id: int) -> AsyncIterator[bytes]:
    """A finished run's stored events, page by page, up to its final event (or an ``end``
    made from the record when that event is not stored)."""
    last_id = after_id
    while True:
        page = await events.by_run(run.run_id, after_id=last_id, limit=EVENT_PAGE)
        if not page:
            yield _end_from_record(run)
            return
        out, ended = _frames(page)
        if out:
            yield b"".join(out)
        if ended:
            return
        last_id = page[-1].id


async def _live(
    live: StreamSubscription, runs: RunStore, run: Run, timing: FollowTiming
) -> AsyncIterator[bytes]:
    """A run still going: its stored events, then live ones, without gap, until its final
    event (or, when the record says it finished and no event came for two idle checks, an
    ``end`` from the record)."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    next_check = now + timing.idle_check_seconds
    next_keepalive = now + timing.keepalive_seconds
    final_seen = False
    while True:
        batch = await live.next_batch(min(next_check, next_keepalive))
        if batch is None:  # the store or the server is closing: the client reconnects
            return
        now = loop.time()
        if batch:
            out, ended = _frames(batch)
            if out:
                yield b"".join(out)
                next_keepalive = loop.time() + timing.keepalive_seconds
            if ended:
                return
            next_check = loop.time() + timing.idle_check_seconds
            continue
        if now >= next_keepalive:
            yield KEEPALIVE
            next_keepalive = loop.time() + timing.keepalive_seconds
        if now >= next_check:
            current = await runs.get(run.run_id)
            if current is None or current.status.is_final:
                # Give the final event one more period to arrive before ending without.
                if final_seen:
                    yield _end_from_record(current or run)
                    return
                final_seen = True
            next_check = loop.time() + timing.idle_check_seconds


def _frames(events: list[Event]) -> tuple[list[bytes], bool]:
    """The messages of ``events`` up to the run's final event, and whether it was among
    them."""
    out: list[bytes] = []
    for event in events:
        message = _message(event)
        if message is not None:
            out.append(message)
        if event.type in _ENDS:
            return out, True
    return out, False


def _message(event: Event) -> bytes | None:
    data = event.data
    if event.type == OUTPUT:
        output = {
            "text": str(data.get("text", "")),
            "seq": data.get("seq"),
            "offset": data.get("offset"),
            "bytes": data.get("bytes"),
        }
        return frame("output", dumps(output), event.id)
    if event.type in _ENDS:
        return frame("end", dumps(_end_data(data)), event.id)
    if "status" in data:
        return frame("status", dumps({"status": data.get("status")}), event.id)
    return None


def _end_data(data: Mapping[str, Any]) -> dict[str, Any]:
    end = {name: data.get(name) for name in _END_FIELDS}
    if isinstance(end.get("error"), str):
        end["error"] = shown_error(end["error"])
    return end


def _end_from_record(run: Run) -> bytes:
    """The ``end`` event of a run whose final event is not in the event store (no id: it
    is not a durable event)."""
    finished = None if run.finished_at is None else run.finished_at.isoformat()
    ended = {
        "status": run.status.value,
        "exitCode": run.exit_code,
        "error": shown_error(run.error),
        "finishedAt": finished,
        "outputBytes": run.output_bytes,
        "outputTruncated": run.output_truncated,
    }
    return frame("end", dumps(ended), None)
