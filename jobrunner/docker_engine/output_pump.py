"""A container's output, from the blocking ``attach`` stream into the event loop.

The stream is read on a thread of its own; at most :data:`PENDING_CHUNKS` chunks are in
flight, so a slow reader back-pressures the job's pipes instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import suppress
from typing import Any

from jobrunner.docker_engine.client import ENGINE_ERRORS
from jobrunner.engine import OutputCallback, RunSpec
from jobrunner.masking import OutputMasker
from jobrunner.output import OutputBuffer

logger = logging.getLogger(__name__)

PENDING_CHUNKS = 64
"""Output chunks in flight between the reader thread and the loop."""


class OutputPump:
    """Moves chunks from the blocking output stream (a thread) into the event loop, with at
    most :data:`PENDING_CHUNKS` in flight so a slow consumer slows the job instead of
    memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._slots = threading.Semaphore(PENDING_CHUNKS)
        self._closed = threading.Event()
        self._stream: Any = None

    def start(self, stream: Any, *, name: str) -> None:
        self._stream = stream
        threading.Thread(target=self._pump, args=(stream,), name=name, daemon=True).start()

    def _post(self, item: bytes | None) -> None:
        with suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _pump(self, stream: Any) -> None:
        try:
            for chunk in stream:
                while not self._slots.acquire(timeout=0.5):
                    if self._closed.is_set():
                        return
                if self._closed.is_set():
                    return
                self._post(chunk)
        except (*ENGINE_ERRORS, OSError, ValueError) as exc:
            # The stream breaks when the container is removed under it; the run decides.
            logger.debug("output stream ended", extra={"error": str(exc)})
        finally:
            # Cancellation may already have closed the client's socket under the stream
            # from another thread; closing it again can only fail harmlessly.
            with suppress(*ENGINE_ERRORS, OSError, ValueError):
                stream.close()
            self._post(None)

    async def get(self) -> bytes | None:
        """The next chunk, or ``None`` at the end of the stream."""
        item = await self._queue.get()
        if item is not None:
            self._slots.release()
        return item

    def close(self) -> None:
        """Stop pumping and close the stream (unblocks the reader thread)."""
        self._closed.set()
        if self._stream is not None:
            with suppress(Exception):  # best effort: the stream may be half gone
                self._stream.close()


async def consume(
    pump: OutputPump,
    buffer: OutputBuffer,
    on_output: OutputCallback | None,
    spec: RunSpec,
    limit_passed: asyncio.Event,
) -> None:
    """Mask the secret values of ``spec.mask`` in every chunk (``jobrunner.masking``),
    retain it in ``buffer`` and pass it to ``on_output``; set ``limit_passed`` once the
    output is over a ``fail`` limit."""
    masker = OutputMasker(spec.mask)
    while True:
        raw = await pump.get()
        chunk = masker.flush() if raw is None else masker.feed(raw)
        if chunk:
            buffer.append(chunk)
            if on_output is not None:
                await on_output(chunk)
            if spec.on_output_limit == "fail" and buffer.truncated:
                limit_passed.set()
        if raw is None:
            return
