"""The ``text/event-stream`` response every stream of the admin API is written through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
"""What one message of a stream is, for the OpenAPI document (as FastAPI's
``EventSourceResponse`` describes it)."""


class EventStreamResponse(StreamingResponse):
    """A stream's pre-encoded bytes, written as it produces them: one chunk per wake-up, no
    per-message model or relay task. Starlette ends the body when the server reports the
    client's disconnect. The media type is given per response (:func:`event_stream`), not
    as a class attribute, so that the OpenAPI document describes the body by the route's
    ``responses`` only."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # When the client leaves while a chunk is being sent, the generator is
            # suspended at its ``yield``: close it now (not when it is garbage collected).
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


def event_stream(body: AsyncIterator[bytes]) -> EventStreamResponse:
    """``body`` as server-sent events, never stored nor buffered by proxies
    (``X-Accel-Buffering: no``)."""
    return EventStreamResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
