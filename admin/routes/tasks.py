"""``GET /tasks``: tasks by state with queue/handler/search filters; ``GET /tasks/{id}``:
one task (its state and last error, never its payload), 404 when there is none (a done task
without a key is removed when it finishes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from admin.auth import RequireViewer
from admin.deps import QueueDep
from admin.errors import NotFound
from admin.schemas import MAX_INT, TaskBody, TaskList
from admin.schemas_tasks import TaskOne
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


@router.get("/tasks/{task_id}", response_model=TaskOne)
async def get_task(
    task_id: Annotated[int, Path(ge=1, le=MAX_INT)], _: RequireViewer, queue: QueueDep
) -> TaskOne:
    found = await queue.get_task(task_id)
    if found is None:
        raise NotFound(f"task {task_id} not found")
    return TaskOne(task=TaskBody.of(found))
