"""Schedules: list, detail, factories, events, create/update, delete, pause/resume (one or
all) and run now, over :class:`~scheduler.manager.ScheduleManager` (SPEC §5, §7).

- ``POST /schedules`` creates (201) or updates (200) the schedule named in the body; a field
  the body leaves out keeps its stored value on update. A bad spec or time zone is 400
  naming the field and value; a factory nobody registered is 412 ``precondition_failed``.
- ``POST /schedules/{name}/pause`` and ``POST /schedules/pause`` take ``{"paused": bool}``;
  an empty body pauses (seed 003 clients send empty bodies to action routes). Pausing or
  resuming all sets every schedule's own flag (see :class:`~scheduler.manager.ScheduleManager`)
  and answers how many changed (``updated``).
- ``GET /schedules/events`` lists firings in seed 003's shape (:mod:`admin.seed.schedule_events`):
  of schedule ``name``, or of every schedule without it.
- ``POST /schedules/{name}/run`` enqueues the schedule's task now, also while paused; when
  the overlap policy skips it, nothing is enqueued and the answer is 409
  ``schedule_run_skipped`` saying why. It is capped per schedule: at most
  ``WORKER_ADMIN_SCHEDULE_RUN_MAX`` calls within any ``WORKER_ADMIN_SCHEDULE_RUN_WINDOW``
  seconds, counted in memory by this process (a sliding window); one more is 429
  ``schedule_run_limit_exceeded``. Calls refused before the run (role, approval, unknown
  schedule, store unavailable) do not count.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic.alias_generators import to_camel

from admin.auth import RequireViewer, config_of
from admin.config import Role
from admin.deps import SchedulesDep, ServicesDep
from admin.errors import (
    Conflict,
    GuardrailExceeded,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
)
from admin.mutations import Mutation, mutation
from admin.ratelimit import SlidingWindow
from admin.schemas import MAX_INT, ErrorBody
from admin.schemas_schedules import (
    FactoryBody,
    FactoryList,
    ScheduleBody,
    ScheduleDeleted,
    ScheduleList,
    ScheduleOne,
    SchedulePauseRequest,
    ScheduleRequest,
    ScheduleRunResult,
    SchedulesPaused,
)
from admin.seed.items import seed_items_of
from admin.seed.schedule_events import ScheduleEventList
from scheduler.errors import SpecError, UnknownFactory
from scheduler.status import ScheduleView
from store.jobs.models import ScheduleHealth
from store.schedules.errors import InvalidSchedule, ScheduleNotFound
from store.schedules.models import SCHEDULE_NAME, Schedule

router = APIRouter(prefix="/schedules", tags=["schedules"])


SaveSchedule = Annotated[
    Mutation, Depends(mutation("schedule.create", Role.ADMIN, body_target="name"))
]
DeleteSchedule = Annotated[
    Mutation, Depends(mutation("schedule.delete", Role.ADMIN, target="name", risky=True))
]
PauseSchedule = Annotated[
    Mutation, Depends(mutation("schedule.pause", Role.OPERATOR, target="name", risky=True))
]
PauseAll = Annotated[
    Mutation,
    Depends(mutation("schedule.pause_all", Role.OPERATOR, fixed_target="*", risky=True)),
]
RunSchedule = Annotated[
    Mutation, Depends(mutation("schedule.run", Role.OPERATOR, target="name", risky=True))
]

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]

SAVED: dict[int | str, dict[str, Any]] = {
    201: {"model": ScheduleOne, "description": "Created"},
    412: {"model": ErrorBody, "description": "The factory is not registered"},
}
RUN_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Not run: the overlap policy skipped it"},
    429: {"model": ErrorBody, "description": "Above the schedule run-now cap"},
}


def run_limiter(request: Request) -> SlidingWindow:
    """The run-now cap of this app (created on first use from its :class:`AdminConfig`)."""
    limiter: SlidingWindow | None = getattr(request.app.state, "schedule_run_limiter", None)
    if limiter is None:
        config = config_of(request)
        limiter = SlidingWindow(config.schedule_run_max, config.schedule_run_window)
        request.app.state.schedule_run_limiter = limiter
    return limiter


RunLimiter = Annotated[SlidingWindow, Depends(run_limiter)]


def _not_found(name: str) -> NotFound:
    return NotFound(f"schedule {name!r} not found")


def _checked(name: str) -> str:
    """``name`` if it can be a schedule's name; otherwise no such schedule exists (404)."""
    if not SCHEDULE_NAME.fullmatch(name):
        raise _not_found(name)
    return name


async def _health(services: ServicesDep) -> dict[str, ScheduleHealth]:
    """How each schedule's runs are going (nothing without a run store)."""
    return {} if services.runs is None else await services.runs.schedule_health()


async def _view(manager: SchedulesDep, name: str) -> ScheduleView:
    found = await manager.get(_checked(name))
    if found is None:
        raise _not_found(name)
    return found


@router.get("", response_model=ScheduleList)
async def list_schedules(
    _: RequireViewer,
    manager: SchedulesDep,
    services: ServicesDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ScheduleList:
    """Schedules ordered by name, with their next and last run, their status and whether
    their runs keep failing."""
    page = await manager.list_views(limit=limit, offset=offset)
    health = await _health(services)
    return ScheduleList(
        schedules=[ScheduleBody.of(item, health.get(item.schedule.name)) for item in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/factories", response_model=FactoryList)
async def list_factories(_: RequireViewer, manager: SchedulesDep) -> FactoryList:
    """The factories registered in this process (one per job, plus the configured
    ``WORKER_DURABLE_CRON_HANDLERS``), by name."""
    return FactoryList(factories=[FactoryBody.of(factory) for factory in manager.factories])


@router.get("/events", response_model=ScheduleEventList)
async def schedule_events(
    request: Request,
    _: RequireViewer,
    services: ServicesDep,
    name: Annotated[str | None, Query(max_length=512)] = None,
    limit: Limit = 25,
) -> JSONResponse:
    """The newest ``limit`` firings of schedule ``name`` (also of a deleted one), or of
    every schedule without it, newest first, in seed 003's shape."""
    items = seed_items_of(request.app, services)
    return JSONResponse({"events": await items.schedule_events(name or None, limit)})


@router.post("", response_model=ScheduleOne, responses=SAVED)
async def save_schedule(
    body: ScheduleRequest, audit: SaveSchedule, manager: SchedulesDep, response: Response
) -> ScheduleOne:
    """Create (201) or update (200) the schedule named ``name``."""
    existing = await manager.get(body.name) if SCHEDULE_NAME.fullmatch(body.name) else None
    schedule = _schedule_of(body, None if existing is None else existing.schedule)
    try:
        saved, created = await manager.save(schedule)
    except SpecError as exc:
        raise InvalidRequest(_spec_message(exc, schedule)) from None
    except UnknownFactory as exc:
        raise PreconditionFailed(
            f"factory: {exc}; register it first (define a job of that name, or list the "
            "handler in WORKER_DURABLE_CRON_HANDLERS)"
        ) from None
    await audit.ok(f"{'created' if created else 'updated'} revision={saved.revision}")
    if created:
        response.status_code = 201
    return ScheduleOne(schedule=ScheduleBody.of(await _view(manager, saved.name)))


@router.post("/pause", response_model=SchedulesPaused)
async def pause_all(
    audit: PauseAll, manager: SchedulesDep, body: SchedulePauseRequest | None = None
) -> SchedulesPaused:
    """Pause (``{"paused": true}`` or an empty body) or resume (``false``) every schedule,
    each by its own flag; ``updated`` counts those that changed. Resuming fires from the
    next tick, no burst."""
    paused = True if body is None else body.paused
    updated = await (manager.pause_all() if paused else manager.resume_all())
    await audit.ok(f"paused={str(paused).lower()} updated={updated}")
    return SchedulesPaused(paused=paused, updated=updated)


@router.get("/{name}", response_model=ScheduleOne)
async def get_schedule(
    name: str, _: RequireViewer, manager: SchedulesDep, services: ServicesDep
) -> ScheduleOne:
    view = await _view(manager, name)
    health = await _health(services)
    return ScheduleOne(schedule=ScheduleBody.of(view, health.get(view.schedule.name)))


@router.delete("/{name}", response_model=ScheduleDeleted)
async def delete_schedule(
    name: str, audit: DeleteSchedule, manager: SchedulesDep
) -> ScheduleDeleted:
    if not await manager.delete(_checked(name)):
        raise _not_found(name)
    await audit.ok("deleted=true")
    return ScheduleDeleted(name=name, deleted=True)


@router.post("/{name}/pause", response_model=ScheduleOne)
async def pause_schedule(
    name: str,
    audit: PauseSchedule,
    manager: SchedulesDep,
    body: SchedulePauseRequest | None = None,
) -> ScheduleOne:
    """Pause (``{"paused": true}`` or an empty body) or resume (``false``) one schedule."""
    paused = True if body is None else body.paused
    try:
        _checked(name)
        await (manager.pause(name) if paused else manager.resume(name))
    except ScheduleNotFound:
        raise _not_found(name) from None
    await audit.ok(f"paused={str(paused).lower()}")
    return ScheduleOne(schedule=ScheduleBody.of(await _view(manager, name)))


@router.post("/{name}/run", response_model=ScheduleRunResult, responses=RUN_REFUSED)
async def run_schedule(
    name: str, audit: RunSchedule, manager: SchedulesDep, limiter: RunLimiter
) -> ScheduleRunResult:
    """Enqueue the schedule's task now (also while paused); 409 ``schedule_run_skipped``
    when the overlap policy skips it. The body, if any, is ignored."""
    wait = limiter.acquire(_checked(name))
    if wait is not None:
        raise GuardrailExceeded(
            f"schedule {name!r} was run {limiter.limit} times within the last "
            f"{limiter.window:g}s (WORKER_ADMIN_SCHEDULE_RUN_MAX per "
            f"WORKER_ADMIN_SCHEDULE_RUN_WINDOW); retry in {max(math.ceil(wait), 1)}s",
            code="schedule_run_limit_exceeded",
        )
    try:
        result = await manager.run_now(name)
    except ScheduleNotFound:
        limiter.release(name)
        raise _not_found(name) from None
    except BaseException:
        limiter.release(name)
        raise
    if result.task is None:
        raise Conflict(
            f"schedule {name!r} was not run ({result.skipped}): {result.detail}",
            code="schedule_run_skipped",
        )
    await audit.ok(f"enqueued taskId={result.task.id} key={result.task.key}")
    return ScheduleRunResult.of(result)


def _schedule_of(body: ScheduleRequest, existing: Schedule | None) -> Schedule:
    """The schedule to save: the body's fields over the stored ones (or the defaults)."""
    fields: dict[str, Any] = {}
    if existing is not None:
        fields = {
            "timezone": existing.timezone,
            "factory": existing.factory,
            "payload": existing.payload,
            "paused": existing.paused,
            "overlap_policy": existing.overlap_policy,
            "misfire_grace_seconds": existing.misfire_grace_seconds,
            "catch_up": existing.catch_up,
        }
    for field in (
        "timezone",
        "factory",
        "payload",
        "paused",
        "overlap_policy",
        "misfire_grace_seconds",
        "catch_up",
    ):
        value = getattr(body, field)
        if value is not None:
            fields[field] = value
    try:
        return Schedule(name=body.name, spec=body.spec, **fields)
    except InvalidSchedule as exc:
        raise InvalidRequest(f"{to_camel(exc.field)}: {exc.message}") from None


def _spec_message(exc: SpecError, schedule: Schedule) -> str:
    if exc.field in ("spec", "timezone"):
        return str(exc)
    return f"spec: {schedule.spec!r} is invalid: {exc}"
