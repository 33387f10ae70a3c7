"""Where a stream resumes: the ``Last-Event-ID`` header, else ``?lastEventId=``.

Browsers send ``Last-Event-ID`` (the last ``id:`` they received) when they reconnect, so the
header wins over the query of the URL they first connected to; the query is for clients
that cannot set headers. Both name a durable event id, so resuming works across restarts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from admin.errors import InvalidRequest


def _event_id(raw: str, name: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        raise InvalidRequest(f"{name}: must be an event id (a non-negative integer), got {raw!r}")
    return int(text)


def resume_point(
    request: Request,
    last_event_id: Annotated[
        str | None,
        Query(alias="lastEventId", description="Resume after this event id"),
    ] = None,
) -> int | None:
    """The id to resume after (``None`` without either); a value that is not a
    non-negative integer is a 400 naming where it came from."""
    header = request.headers.get("last-event-id", "").strip()
    if header:
        return _event_id(header, "Last-Event-ID")
    if last_event_id is not None and last_event_id.strip():
        return _event_id(last_event_id, "lastEventId")
    return None


ResumePoint = Annotated[int | None, Depends(resume_point)]
