"""``POST /schedules/preview``: the next fire times of a spec, as the schedule editor shows
them while one types. Reads nothing and changes nothing, so a viewer may call it and it is
not audited (a POST only because the spec travels in a body)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from admin.auth import RequireViewer
from admin.errors import InvalidRequest
from admin.schemas import epoch_ms, rfc3339
from admin.schemas_tasks import FireTime, SchedulePreviewRequest, SchedulePreviewResult
from scheduler.errors import SpecError
from scheduler.spec import next_fire_time, parse_spec, parse_timezone

router = APIRouter(prefix="/schedules", tags=["schedules"])

READ_ONLY = {"x-longshore-read-only": True}
"""Marks a POST that changes nothing (the API reference and its test read it)."""


@router.post("/preview", response_model=SchedulePreviewResult, openapi_extra=READ_ONLY)
async def preview_schedule(_: RequireViewer, body: SchedulePreviewRequest) -> SchedulePreviewResult:
    """The next ``count`` fire times of ``spec`` read in ``timezone``, after ``after``
    (default now): each in that zone and in UTC. A bad spec or zone is 400 naming it."""
    try:
        spec = parse_spec(body.spec)
    except SpecError as exc:
        raise InvalidRequest(f"spec {body.spec!r}: {exc}") from None
    zone = parse_timezone(body.timezone)
    moment = body.after or datetime.now(UTC)
    fire_times: list[FireTime] = []
    for _index in range(body.count):
        found = next_fire_time(spec, moment, zone)
        if found is None:
            break
        fire_times.append(
            FireTime(
                at=found.astimezone(zone).isoformat(),
                at_utc=rfc3339(found.astimezone(UTC)) or "",
                at_ms=epoch_ms(found) or 0,
            )
        )
        moment = found
    return SchedulePreviewResult(spec=body.spec, timezone=body.timezone, fire_times=fire_times)
