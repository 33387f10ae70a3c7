"""The overlap policy: whether a schedule may fire while the task of its previous firing is
still waiting or running.

``allow`` always fires; ``forbid`` skips while that task is active; ``replace`` cancels a
waiting task, asks the factory to cancel a running one (``cancel_running``) and skips only
when that is impossible.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.factories import Factory
from store.errors import TaskNotFound, TaskNotWaiting
from store.queue.models import TaskState
from store.queue.protocol import TaskQueue
from store.schedules.models import LastTask, OverlapPolicy

ACTIVE_STATES = frozenset({TaskState.READY, TaskState.SCHEDULED, TaskState.RUNNING})


@dataclass(frozen=True, kw_only=True)
class Blocked:
    """The firing may not happen: ``task_id`` (in ``task_state``) is in the way."""

    detail: str
    task_id: int
    task_state: str


@dataclass(frozen=True, kw_only=True)
class Clearance:
    """The firing may happen; ``replaced`` is the id of a task cancelled to make room."""

    replaced: int | None = None


async def check_overlap(
    queue: TaskQueue, policy: OverlapPolicy, factory: Factory, latest: LastTask | None
) -> Blocked | Clearance:
    """Apply ``policy`` against ``latest``, the task of the schedule's previous firing."""
    if policy is OverlapPolicy.ALLOW or latest is None or latest.state not in ACTIVE_STATES:
        return Clearance()
    if policy is OverlapPolicy.FORBID:
        return Blocked(
            detail=f"task {latest.task_id} of the previous firing is {latest.state.value}",
            task_id=latest.task_id,
            task_state=latest.state.value,
        )
    return await _replace(queue, factory, latest.task_id)


async def _replace(queue: TaskQueue, factory: Factory, task_id: int) -> Blocked | Clearance:
    """``replace`` against the schedule's active latest task."""
    task = await queue.get_task(task_id)
    if task is None or task.state not in ACTIVE_STATES:
        return Clearance()
    if task.state is not TaskState.RUNNING:
        try:
            await queue.cancel(task.id)
            return Clearance(replaced=task.id)
        except TaskNotFound:
            return Clearance()
        except TaskNotWaiting:
            refreshed = await queue.get_task(task.id)
            if refreshed is None or refreshed.state not in ACTIVE_STATES:
                return Clearance()
            task = refreshed
    if factory.cancel_running is None:
        return Blocked(
            detail=f"task {task.id} is running and factory {factory.name!r} cannot cancel it",
            task_id=task.id,
            task_state=task.state.value,
        )
    if not await factory.cancel_running(task):
        return Blocked(
            detail=f"task {task.id} is running and could not be cancelled",
            task_id=task.id,
            task_state=task.state.value,
        )
    return Clearance(replaced=task.id)
