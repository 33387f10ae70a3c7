"""A run's live output as ``RunOutputEmitted`` events, throttled so it never slows the run.

The run's retained output (head + tail, stored when it ends) is the engine's business; this
is only the live view followers see while it runs, and it may drop output when the event
store cannot keep up (each event says where its bytes sit in the output, so a gap shows).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time

from jobrunner.errors import describe
from store.background import TaskOwner
from store.events.models import EventType, NewEvent
from store.events.protocol import EventStore
from store.jobs.models import Run

logger = logging.getLogger(__name__)

OUTPUT_EVENT_BYTES = 8 * 1024
"""The most output one ``RunOutputEmitted`` event carries (cut at a line end if possible)."""

OUTPUT_EVENTS_PER_SECOND = 20.0
"""The most ``RunOutputEmitted`` events per second of one run; output coalesces meanwhile."""

OUTPUT_PENDING_BYTES = 256 * 1024
"""Output waiting for its event beyond this is dropped from the live stream (and counted);
the run's retained output is unaffected."""

OUTPUT_DRAIN_SECONDS = 5.0
"""How long the end of a run waits for its last output events before counting them dropped."""


class OutputEvents:
    """Streams one run's output as ``RunOutputEmitted`` events without ever slowing it.

    :meth:`feed` (the engine's output callback) only appends to a pending buffer; a
    background task turns it into events of at most :data:`OUTPUT_EVENT_BYTES`, cut after
    the last complete line when there is one, at most :data:`OUTPUT_EVENTS_PER_SECOND` a
    second (output arriving meanwhile coalesces). When the event store is slow the buffer
    fills up to :data:`OUTPUT_PENDING_BYTES`; chunks beyond it are dropped from the live
    stream and counted (``dropped``), as are events whose append failed. Each event has
    ``seq`` (from 0), ``offset`` (of its first byte in the run's output, so a gap shows
    where output was dropped), ``bytes`` and ``text`` (UTF-8, invalid bytes replaced).
    Made inside the event loop; :meth:`close` ends it.
    """

    def __init__(self, events: EventStore, run: Run) -> None:
        self._events = events
        self._job = run.job
        self._run_id = run.run_id
        self._pending = bytearray()
        self._offset = 0  # output offset of the first pending byte
        self._seen = 0  # output bytes fed so far
        self._skipping = False  # dropping until the backlog is sent
        self._seq = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._failures_logged = False
        self.sent = 0
        self.dropped = 0
        self._tasks = TaskOwner(f"run-output {run.run_id}")
        self._task = self._tasks.spawn(self._pump(), name=f"run-output-{run.run_id[:12]}")

    async def feed(self, chunk: bytes) -> None:
        """Queue ``chunk`` for the live stream, or drop it (never waits)."""
        if self._skipping and not self._pending:
            # The backlog is sent: resume after the dropped output (``offset`` shows the gap).
            self._skipping = False
            self._offset = self._seen
            self._decoder.reset()
        self._seen += len(chunk)
        if self._skipping or len(self._pending) + len(chunk) > OUTPUT_PENDING_BYTES:
            self._skipping = True
            self.dropped += 1
            return
        self._pending += chunk
        self._wake.set()

    def _take(self) -> tuple[int, bytes]:
        pending = self._pending
        size = min(len(pending), OUTPUT_EVENT_BYTES)
        if size < len(pending) or not self._closing:
            # Cut after the last complete line in the window, if there is one.
            newline = pending.rfind(b"\n", 0, size)
            if newline >= 0:
                size = newline + 1
        piece = bytes(pending[:size])
        del pending[:size]
        offset = self._offset
        self._offset += size
        return offset, piece

    async def _pump(self) -> None:
        interval = 1.0 / OUTPUT_EVENTS_PER_SECOND
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            began = time.monotonic()
            offset, piece = self._take()
            text = self._decoder.decode(piece, final=self._closing and not self._pending)
            event = NewEvent.run(
                EventType.RUN_OUTPUT_EMITTED,
                job=self._job,
                run_id=self._run_id,
                seq=self._seq,
                offset=offset,
                bytes=len(piece),
                text=text,
            )
            self._seq += 1
            try:
                await self._events.append(event)
                self.sent += 1
            except Exception as exc:
                self.dropped += 1
                if not self._failures_logged:
                    self._failures_logged = True
                    logger.warning(
                        "could not append a run output event; the run goes on",
                        extra={"run_id": self._run_id, "error": describe(exc)},
                    )
            if not self._closing:
                # The rate limit, cut short by close(): the rest then goes out at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._closed.wait(), max(0.0, interval - (time.monotonic() - began))
                    )

    async def close(self, *, drain: bool) -> None:
        """End the stream: with ``drain``, send what is pending (at most
        :data:`OUTPUT_DRAIN_SECONDS`, without the rate limit), then stop; what is left
        unsent counts as dropped."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        try:
            if drain:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._task), OUTPUT_DRAIN_SECONDS)
        finally:
            await self._tasks.close()  # cancels the pump if the drain ran out of time
            if self._pending:
                self.dropped += 1
                self._pending.clear()
