"""``GET /tasks``: tasks by state with queue/handler/search filters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from admin.auth import RequireViewer
from admin.deps import QueueDep
from admin.schemas import MAX_INT, TaskBody, TaskList
from store.queue.models import TaskFilter, TaskState

router = APIRouter(tags=["tasks"])


@router.get("/tasks", response_model=TaskList)
async def list_tasks(
    _: RequireViewer,
    queue: QueueDep,
    state: TaskState | None = None,
    queue_name: Annotated[str | None, Query(alias="queue")] = None,
    handler: str | None = None,
    query: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> TaskList:
    page = await queue.list_tasks(
        TaskFilter(state=state, queue=queue_name, handler=handler, search=query),
        limit=limit,
        offset=offset,
    )
    return TaskList(
        tasks=[TaskBody.of(task) for task in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )
