"""``GET /audit`` (newest first) and ``GET /audit/export`` (streamed JSONL, JSON or CSV).

Filters (both routes): ``action``, ``target``, ``actor`` (exact matches; an empty value is
no filter, as seed 003's UI sends), ``since`` (inclusive) and ``until`` (exclusive), each
RFC 3339 (with an offset, e.g. ``2026-01-02T03:04:05Z``) or epoch milliseconds. The export's
``limit`` defaults to, and is clamped by the event store to, ``WORKER_ADMIN_AUDIT_EXPORT_LIMIT_MAX``
(seed 003's gateway clamps too); the export holds the newest ``limit`` matching entries (the
ones ``GET /audit`` lists with that limit), written oldest first.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from admin.auth import RequireViewer
from admin.deps import AuditDep
from admin.errors import InvalidRequest
from admin.schemas_events import AuditList, AuditRow
from store.events import AuditQuery, ExportFormat

router = APIRouter(prefix="/audit", tags=["audit"])

MEDIA_TYPES = {
    ExportFormat.JSONL: "application/x-ndjson",
    ExportFormat.JSON: "application/json",
    ExportFormat.CSV: "text/csv; charset=utf-8",
}

ListLimit = Annotated[int, Query(ge=1, le=1000)]
ExportLimit = Annotated[int | None, Query(ge=1)]
Moment = Annotated[
    str | None, Query(description="RFC 3339 timestamp with offset, or epoch milliseconds")
]

_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The export, streamed, as an attachment",
        "content": {media: {} for media in MEDIA_TYPES.values()},
    }
}


def parse_moment(value: str | None, name: str) -> datetime | None:
    """``since``/``until``: RFC 3339 (an offset is required) or epoch milliseconds; a bad
    value is a 400 naming the parameter."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        try:
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidRequest(f"{name}: epoch milliseconds out of range: {text}") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{name}: must be an RFC 3339 timestamp (e.g. 2026-01-02T03:04:05Z) "
            f"or epoch milliseconds, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{name}: the timestamp needs a UTC offset (e.g. 'Z'), got {text!r}")
    return moment


def audit_query(
    *,
    action: str | None,
    target: str | None,
    actor: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
) -> AuditQuery:
    start, end = parse_moment(since, "since"), parse_moment(until, "until")
    if start is not None and end is not None and end < start:
        raise InvalidRequest("until: must not be before since")
    return AuditQuery(
        action=action or None,
        target=target or None,
        actor=actor or None,
        since=start,
        until=end,
        limit=limit,
    )


@router.get("", response_model=AuditList)
async def list_audit(
    _: RequireViewer,
    audit: AuditDep,
    limit: ListLimit = 100,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    since: Moment = None,
    until: Moment = None,
) -> AuditList:
    """Audit entries of admin mutations (accepted and refused), newest first."""
    query = audit_query(
        action=action, target=target, actor=actor, since=since, until=until, limit=limit
    )
    entries = await audit.recent(query)
    return AuditList(events=[AuditRow.of(entry) for entry in entries], limit=limit)


@router.get("/export", response_class=StreamingResponse, responses=_EXPORT_RESPONSES)
async def export_audit(
    _: RequireViewer,
    audit: AuditDep,
    format_name: Annotated[str, Query(alias="format")] = "jsonl",
    limit: ExportLimit = None,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    since: Moment = None,
    until: Moment = None,
) -> StreamingResponse:
    """The newest ``limit`` matching entries, written oldest first, streamed with constant
    memory as ``jsonl``, ``json`` (one array) or ``csv`` (spreadsheet-safe; see
    docs/events.md)."""
    try:
        fmt = ExportFormat(format_name.strip().lower())
    except ValueError:
        names = ", ".join(f.value for f in ExportFormat)
        raise InvalidRequest(f"format: must be one of {names}, got {format_name!r}") from None
    query = audit_query(
        action=action, target=target, actor=actor, since=since, until=until, limit=limit
    )
    chunks = audit.export(query, fmt, newest=True)
    # The first chunk is read before the response starts, so a store failure is still an
    # error response (503), not a cut stream.
    first = await anext(chunks, b"")
    filename = f"admin-audit-{int(time.time())}.{fmt.value}"
    return StreamingResponse(
        _chain(first, chunks),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        # A client that goes away mid-export: stop the store's reader thread too.
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()
