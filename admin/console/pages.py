"""Console pages: overview, jobs and runs (server-rendered; actions are API calls made by
the console's script)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from admin.auth import RequireViewer
from admin.console import charts
from admin.console.render import render
from admin.errors import InvalidRequest, NotFound
from admin.routes.jobs import env_visible
from admin.routes.overview import overview_of
from admin.schemas_jobs import JobBody, JobRequest
from admin.services import AdminServices
from store.jobs.models import Run, RunStatus, RunTrigger

router = APIRouter(include_in_schema=False)

PAGE = 50
"""Rows per page of every list."""
SCAN_MAX = 2000
"""The most runs read to filter by trigger or time (the store filters job and status)."""
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def services_of(request: Request) -> AdminServices:
    services: AdminServices = request.app.state.admin_services
    return services


def _need(value: Any, what: str) -> Any:
    if value is None:
        raise NotFound(f"{what} are not served by this admin API")
    return value


def pager(
    total: int, offset: int, query: dict[str, str], *, capped: bool = False
) -> dict[str, Any]:
    """Links to the previous and next pages (``None`` at either end); ``capped``: the total
    is a lower bound (shown as "N+")."""

    def link(at: int) -> str:
        return "?" + urlencode([(k, v) for k, v in query.items() if v] + [("offset", str(at))])

    return {
        "total": total,
        "capped": capped,
        "first": offset + 1 if total else 0,
        "last": min(offset + PAGE, total),
        "prev": link(max(0, offset - PAGE)) if offset > 0 else None,
        "next": link(offset + PAGE) if offset + PAGE < total else None,
    }


# --- overview -------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, identity: RequireViewer) -> HTMLResponse:
    services = services_of(request)
    body = await overview_of(request, services).get()
    now = datetime.now(UTC)
    chart = failures = None
    if services.runs is not None:
        chart = await _runs_chart(request, services, now)
        failed = await services.runs.list_runs(status=RunStatus.FAILED, limit=5, offset=0)
        failures = failed.items
    firings: list[Any] = []
    if services.schedules is not None:
        page = await services.schedules.list_views(limit=200, offset=0, last_fired=False)
        upcoming = [(view.next_run, view) for view in page.items if view.next_run is not None]
        upcoming.sort(key=lambda pair: pair[0])
        firings = [view for _, view in upcoming[:5]]
    return render(
        request,
        "overview.html",
        identity,
        title="Overview",
        active="overview",
        stats=body.stats,
        coordination=body.coordination,
        chart=chart,
        failures=failures,
        firings=firings,
        live=True,
    )


CHART_SECONDS = 15.0
"""How long the overview's runs-per-hour chart is reused (it reads the newest 1,000 runs)."""


async def _runs_chart(request: Request, services: AdminServices, now: datetime) -> charts.Chart:
    cached: tuple[float, charts.Chart] | None = getattr(request.app.state, "console_chart", None)
    clock = time.monotonic()
    if cached is not None and clock - cached[0] < CHART_SECONDS:
        return cached[1]
    assert services.runs is not None
    recent = await services.runs.list_runs(limit=1000, offset=0)
    chart = charts.runs_per_hour(recent.items, now)
    request.app.state.console_chart = (clock, chart)
    return chart


# --- jobs -----------------------------------------------------------------------------------


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(request: Request, identity: RequireViewer, offset: Offset = 0) -> HTMLResponse:
    store = _need(services_of(request).jobs, "jobs")
    page = await store.list_jobs(limit=PAGE, offset=offset)
    shown = [JobBody.of(job, env_values=False) for job in page.items]
    return render(
        request,
        "jobs.html",
        identity,
        title="Jobs",
        active="jobs",
        jobs=shown,
        pager=pager(page.total, offset, {}),
    )


NEW_JOB_YAML = """\
name: my-job
source: tarball_path
tarballPath: job.tar.gz
command: [sh, /job.sh]
env:
  - MODE=full
"""
"""What the YAML tab of a new job starts with."""


@router.get("/jobs/new", response_class=HTMLResponse)
async def new_job(request: Request, identity: RequireViewer, view: str = "form") -> HTMLResponse:
    return render(
        request,
        "job_form.html",
        identity,
        title="New job",
        active="jobs",
        job=None,
        view=_view(view),
        yaml_text=NEW_JOB_YAML,
        here="/jobs/new",
    )


@router.get("/jobs/{name}/edit", response_class=HTMLResponse)
async def edit_job(
    name: str, request: Request, identity: RequireViewer, view: str = "form"
) -> HTMLResponse:
    job = await _job(request, name)
    body = JobBody.of(job, env_values=env_visible(identity))
    return render(
        request,
        "job_form.html",
        identity,
        title=f"Edit {name}",
        active="jobs",
        job=body,
        view=_view(view),
        yaml_text=definition_yaml(body),
        here=f"/jobs/{quote(name)}/edit",
    )


def _view(view: str) -> str:
    if view not in ("form", "yaml"):
        raise InvalidRequest(f"view: {view!r} is not one of form, yaml")
    return view


_REQUEST_FIELDS = tuple(field.alias or name for name, field in JobRequest.model_fields.items())


def definition_yaml(body: JobBody) -> str:
    """``body`` as the YAML a ``POST /jobs`` takes: the request's fields in their order,
    without the unset ones (seed 003's ``""``), the saved secrets and parameters included."""
    shown = body.model_dump(by_alias=True, exclude_none=True)
    picked = {
        key: shown[key] for key in _REQUEST_FIELDS if key in shown and shown[key] not in ("", None)
    }
    text: str = yaml.safe_dump(picked, sort_keys=False, allow_unicode=True, width=100)
    return text


async def _job(request: Request, name: str) -> Any:
    job = await _need(services_of(request).jobs, "jobs").get(name)
    if job is None:
        raise NotFound(f"job {name!r} not found")
    return job


@router.get("/jobs/{name}", response_class=HTMLResponse)
async def job(name: str, request: Request, identity: RequireViewer) -> HTMLResponse:
    definition = await _job(request, name)
    body = JobBody.of(definition, env_values=env_visible(identity))
    runs = await _need(services_of(request).runs, "runs").list_runs(job=name, limit=PAGE, offset=0)
    timed = [(run.run_id, _seconds(run), run.status) for run in reversed(runs.items)]
    return render(
        request,
        "job.html",
        identity,
        title=f"Job {name}",
        active="jobs",
        job=body,
        overridable=[param for param in body.params if param.overridable],
        runs=runs.items,
        total_runs=runs.total,
        chart=charts.durations(timed),
        durations={run.run_id: _seconds(run) for run in runs.items},
    )


def _seconds(run: Run) -> float | None:
    if run.finished_at is None:
        return None
    return (run.finished_at - run.queued_at).total_seconds()


# --- runs -----------------------------------------------------------------------------------


@router.get("/runs", response_class=HTMLResponse)
async def runs(
    request: Request,
    identity: RequireViewer,
    job: str = "",
    status: str = "",
    trigger: str = "",
    hours: str = "",
    offset: Offset = 0,
) -> HTMLResponse:
    store = _need(services_of(request).runs, "runs")
    wanted_status = _choice(status, RunStatus, "status")
    wanted_trigger = _choice(trigger, RunTrigger, "trigger")
    since = None
    if hours:
        if not hours.isdigit() or not 1 <= int(hours) <= 24 * 366:
            raise InvalidRequest(f"hours: {hours!r} is not a number of hours (1 to 8784)")
        since = datetime.now(UTC) - timedelta(hours=int(hours))
    if wanted_trigger is None and since is None:
        page = await store.list_runs(
            job=job or None, status=wanted_status, limit=PAGE, offset=offset
        )
        items, total, capped = page.items, page.total, False
    else:
        items, total, capped = await _scan(
            store, job or None, wanted_status, wanted_trigger, since, offset
        )
    query = {"job": job, "status": status, "trigger": trigger, "hours": hours}
    return render(
        request,
        "runs.html",
        identity,
        title="Runs",
        active="runs",
        runs=items,
        durations={run.run_id: _seconds(run) for run in items},
        filters=query,
        statuses=[s.value for s in RunStatus],
        triggers=[t.value for t in RunTrigger],
        pager=pager(total, offset, query),
        capped=capped,
    )


def _choice(value: str, kind: Any, name: str) -> Any:
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(item.value for item in kind)
        raise InvalidRequest(f"{name}: {value!r} is not one of {allowed}") from None


async def _scan(
    store: Any,
    job: str | None,
    status: RunStatus | None,
    trigger: RunTrigger | None,
    since: datetime | None,
    offset: int,
) -> tuple[list[Run], int, bool]:
    """Runs matching trigger and time, newest first, from at most :data:`SCAN_MAX` runs
    (runs are listed newest first, so a time filter stops at the first older run)."""
    matched: list[Run] = []
    read = 0
    done = False
    while not done and read < SCAN_MAX:
        page = await store.list_runs(job=job, status=status, limit=500, offset=read)
        read += len(page.items)
        done = len(page.items) < 500
        for run in page.items:
            if since is not None and run.queued_at < since:
                done = True
                break
            if trigger is None or run.trigger == trigger:
                matched.append(run)
    return matched[offset : offset + PAGE], len(matched), not done


_STAGES = (
    ("queued", "queued_at"),
    ("fetching", "fetching_at"),
    ("building", "building_at"),
    ("running", "running_at"),
)


def timeline(run: Run) -> list[dict[str, Any]]:
    """The run's stages entered, each with its start and how long it lasted."""
    points = [(stage, getattr(run, field)) for stage, field in _STAGES if getattr(run, field)]
    if run.finished_at is not None:
        points.append((run.status.value, run.finished_at))
    now = datetime.now(UTC)
    stages = []
    for index, (stage, began) in enumerate(points):
        final = run.finished_at is not None and index == len(points) - 1
        ended = points[index + 1][1] if index + 1 < len(points) else (None if final else now)
        seconds = None if ended is None else max(0.0, (ended - began).total_seconds())
        stages.append({"stage": stage, "at": began, "seconds": seconds, "final": final})
    return stages


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run(run_id: str, request: Request, identity: RequireViewer) -> HTMLResponse:
    store = _need(services_of(request).runs, "runs")
    found = await store.get(run_id) if len(run_id) <= 64 else None
    if found is None:
        raise NotFound(f"run {run_id!r} not found")
    return render(
        request,
        "run.html",
        identity,
        title=f"Run {run_id}",
        active="runs",
        run=found,
        stages=timeline(found),
        total=_seconds(found),
    )
