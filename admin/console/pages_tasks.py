"""Console pages: tasks (by state, with seed 004's actions) and secrets (names only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from admin.auth import RequireViewer
from admin.console.pages import PAGE, Offset, _choice, _need, pager, services_of
from admin.console.render import render
from admin.errors import InvalidRequest
from admin.schemas import TaskBody
from store.queue.models import TaskFilter, TaskState

router = APIRouter(include_in_schema=False)

STATES = ("ready", "scheduled", "running", "dead", "done")
COUNT_MAX = 10_000
"""The most tasks counted for a page's total (shown as "10000+" beyond): counting every
matching task of a large queue would cost the page more than reading its rows."""
ACTIVE = frozenset({"ready", "scheduled", "running"})
"""States whose tasks are offered run now, reschedule and fail (the server refuses a running
task with 409 naming its worker: the console shows that answer)."""


@router.get("/tasks", response_class=HTMLResponse)
async def tasks(
    request: Request,
    identity: RequireViewer,
    state: str = "",
    queue: str = "",
    handler: str = "",
    query: str = "",
    offset: Offset = 0,
) -> HTMLResponse:
    wanted = _choice(state, TaskState, "state")
    if offset >= COUNT_MAX:
        # Skipping tens of thousands of rows costs the page more than its rows; the pager
        # never goes that deep, a hand-made link gets this answer.
        raise InvalidRequest(
            f"offset: the console pages through the first {COUNT_MAX} matching tasks; "
            "narrow the filter (state, queue, handler, text) to reach the others"
        )
    found = TaskFilter(
        state=wanted, queue=queue or None, handler=handler or None, search=query or None
    )
    count_max = COUNT_MAX
    page = await services_of(request).queue.list_tasks(
        found, limit=PAGE, offset=offset, count_max=count_max
    )
    filters = {"state": state, "queue": queue, "handler": handler, "query": query}
    return render(
        request,
        "tasks.html",
        identity,
        title="Tasks",
        active="tasks",
        tasks=[TaskBody.of(task) for task in page.items],
        filters=filters,
        states=STATES,
        active_states=ACTIVE,
        pager=pager(page.total, offset, filters, capped=page.total >= count_max),
    )


@router.get("/secrets", response_class=HTMLResponse)
async def secrets(request: Request, identity: RequireViewer) -> HTMLResponse:
    services = services_of(request)
    store = _need(services.secrets, "secrets")
    listed = await store.list_secrets()
    granted: dict[str, list[str]] = {info.name: [] for info in listed}
    offset = 0
    while services.jobs is not None and listed:
        page = await services.jobs.list_jobs(limit=500, offset=offset)
        for job in page.items:
            for grant in job.secrets:
                granted.setdefault(grant.name, []).append(job.name)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            break
    return render(
        request,
        "secrets.html",
        identity,
        title="Secrets",
        active="secrets",
        secrets=listed,
        granted=granted,
    )
