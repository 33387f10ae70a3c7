"""Console pages of one schedule: its form (the next fire times previewed as you type, by
``POST /admin/v1/schedules/preview``) and its firing history with skips and their reasons."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from admin.auth import RequireViewer
from admin.console.pages import _need, services_of
from admin.console.render import render
from admin.errors import NotFound
from admin.schemas_schedules import ScheduleBody
from admin.seed.items import seed_items_of
from store.schedules.models import CatchUp, OverlapPolicy

router = APIRouter(include_in_schema=False)

HISTORY = 50
"""Firings shown on a schedule's page, newest first."""


def _form(request: Request, identity: Any, schedule: ScheduleBody | None) -> HTMLResponse:
    manager = _need(services_of(request).schedules, "schedules")
    title = f"Edit schedule {schedule.name}" if schedule is not None else "New schedule"
    return render(
        request,
        "schedule_form.html",
        identity,
        title=title,
        active="schedules",
        schedule=schedule,
        factories=sorted(factory.name for factory in manager.factories),
        overlap=[policy.value for policy in OverlapPolicy],
        catch_up=[mode.value for mode in CatchUp],
    )


@router.get("/schedules/new", response_class=HTMLResponse)
async def new_schedule(request: Request, identity: RequireViewer) -> HTMLResponse:
    return _form(request, identity, None)


async def _schedule(request: Request, name: str) -> ScheduleBody:
    manager = _need(services_of(request).schedules, "schedules")
    view = await manager.get(name) if len(name) <= 512 else None
    if view is None:
        raise NotFound(f"schedule {name!r} not found")
    return ScheduleBody.of(view)


@router.get("/schedules/{name}/edit", response_class=HTMLResponse)
async def edit_schedule(name: str, request: Request, identity: RequireViewer) -> HTMLResponse:
    return _form(request, identity, await _schedule(request, name))


@router.get("/schedules/{name}", response_class=HTMLResponse)
async def schedule(name: str, request: Request, identity: RequireViewer) -> HTMLResponse:
    body = await _schedule(request, name)
    services = services_of(request)
    firings = await seed_items_of(request.app, services).schedule_events(name, HISTORY)
    return render(
        request,
        "schedule.html",
        identity,
        title=f"Schedule {name}",
        active="schedules",
        schedule=body,
        firings=firings,
        live=True,
    )
