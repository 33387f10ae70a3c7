"""Console pages: schedules, queues, dead letters, workers, audit and settings."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from admin.auth import RequireViewer, config_of
from admin.console.pages import PAGE, Offset, _need, pager, services_of
from admin.console.render import render
from admin.routes.audit import audit_query
from admin.schemas import DeadEntry, QueueBody, WorkerBody
from admin.schemas_events import AuditRow
from admin.schemas_schedules import ScheduleBody
from store.queue.models import DeadFilter

router = APIRouter(include_in_schema=False)


@router.get("/schedules", response_class=HTMLResponse)
async def schedules(request: Request, identity: RequireViewer, offset: Offset = 0) -> HTMLResponse:
    manager = _need(services_of(request).schedules, "schedules")
    page = await manager.list_views(limit=PAGE, offset=offset)
    return render(
        request,
        "schedules.html",
        identity,
        title="Schedules",
        active="schedules",
        schedules=[ScheduleBody.of(view) for view in page.items],
        pager=pager(page.total, offset, {}),
    )


@router.get("/queues", response_class=HTMLResponse)
async def queues(request: Request, identity: RequireViewer) -> HTMLResponse:
    infos = await services_of(request).queue.list_queues()
    return render(
        request,
        "queues.html",
        identity,
        title="Queues",
        active="queues",
        queues=[QueueBody.of(info) for info in infos],
        paused=await services_of(request).queue.is_global_paused(),
    )


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request,
    identity: RequireViewer,
    queue: str = "",
    handler: str = "",
    query: str = "",
    offset: Offset = 0,
) -> HTMLResponse:
    found = DeadFilter(queue=queue or None, handler=handler or None, search=query or None)
    page = await services_of(request).queue.list_dead(found, limit=PAGE, offset=offset)
    filters = {"queue": queue, "handler": handler, "query": query}
    return render(
        request,
        "dead.html",
        identity,
        title="Dead letters",
        active="dead",
        entries=[DeadEntry.of(task) for task in page.items],
        filters=filters,
        pager=pager(page.total, offset, filters),
    )


@router.get("/workers", response_class=HTMLResponse)
async def workers(request: Request, identity: RequireViewer) -> HTMLResponse:
    records = await services_of(request).queue.list_workers()
    return render(
        request,
        "workers.html",
        identity,
        title="Workers",
        active="workers",
        workers=[WorkerBody.of(record) for record in records],
        live=True,
    )


@router.get("/audit", response_class=HTMLResponse)
async def audit(
    request: Request,
    identity: RequireViewer,
    action: str = "",
    actor: str = "",
    target: str = "",
    since: str = "",
    until: str = "",
) -> HTMLResponse:
    filters = {"action": action, "actor": actor, "target": target, "since": since, "until": until}
    query = audit_query(
        action=action, target=target, actor=actor, since=since, until=until, limit=PAGE * 2
    )
    entries = await services_of(request).audit.recent(query)
    given = {key: value for key, value in filters.items() if value}
    return render(
        request,
        "audit.html",
        identity,
        title="Audit",
        active="audit",
        entries=[AuditRow.of(entry) for entry in entries],
        filters=filters,
        export_csv="/admin/v1/audit/export?" + urlencode({**given, "format": "csv"}),
        export_jsonl="/admin/v1/audit/export?" + urlencode({**given, "format": "jsonl"}),
    )


@router.get("/settings", response_class=HTMLResponse)
async def settings(request: Request, identity: RequireViewer) -> HTMLResponse:
    config = config_of(request)
    return render(
        request,
        "settings.html",
        identity,
        title="Settings",
        active="settings",
        settings=sorted(config.settings_view.items()),
        build={"version": config.version, "commit": config.commit, "built": config.build_time},
        auth_mode=config.console_auth,
    )
