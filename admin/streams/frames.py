"""How a server-sent event is written on the wire, and each stored event's frame encoded once.

Every stream of the admin API writes pre-encoded bytes: a frame is ``event:``, ``data:``
(compact JSON, so always one line: JSON escapes CR and LF) and, for a durable event only,
``id:``, ended by a blank line. Frames without an id (snapshots, heartbeats, a followed
run's ``end`` made from its record) never move a client's resume point.
"""

from __future__ import annotations

import json
import time
from typing import Any

from admin.schemas_events import event_json
from store.events import Event

FRAME_CACHE_SIZE = 4096
"""Encoded event frames kept per app (the newest; an evicted one is encoded again)."""

KEEPALIVE = b": ping\n\n"
"""A comment line: keeps a quiet connection open through proxies; clients ignore it."""


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII characters as they are."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def frame(event: str, data: str, event_id: int | None = None) -> bytes:
    """One SSE message; ``data`` must be one line (as :func:`dumps` makes it)."""
    if event_id is None:
        return f"event: {event}\ndata: {data}\n\n".encode()
    return f"event: {event}\ndata: {data}\nid: {event_id}\n\n".encode()


def preamble(comment: str, retry_ms: int) -> bytes:
    """A stream's first bytes: a comment naming it and the reconnection delay hint."""
    return f": {comment}\nretry: {retry_ms}\n\n".encode()


def heartbeat() -> bytes:
    """A ``heartbeat`` event carrying the server's time (``{"ts": <epoch ms>}``)."""
    return frame("heartbeat", dumps({"ts": int(time.time() * 1000)}))


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
            found = frame(event.type, dumps(event_json(event)), event.id)
            frames[event.id] = found
            if len(frames) > self._size:
                del frames[next(iter(frames))]  # the oldest inserted
        return found

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, event_id: int) -> bool:
        return event_id in self._frames
