"""Seed 004's task actions: complete, fail (with a reason), run now, reschedule, and remove
by key, one task per call.

An action never touches a task a worker holds a lease on (graphile_worker's admin actions
leave locked jobs alone the same way): a running task is 409 ``conflict`` naming the worker
and its lease; force-unlock (``POST /maintenance/force-unlock``) takes tasks back from a
worker that is gone. Which states each action applies to is in :mod:`store.queue.operator`;
any other state is 409 saying why, an unknown task 404.

A ``job.run`` task that is completed, failed or removed before it ran also ends its queued
run (``cancelled``, or ``failed`` with the reason), so no run waits for a task that is gone.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from admin.config import Role
from admin.deps import QueueDep, ServicesDep
from admin.errors import InvalidRequest
from admin.mutations import Mutation, mutation
from admin.schemas import MAX_INT, ErrorBody, TaskBody
from admin.schemas_tasks import (
    TaskActionResult,
    TaskFailRequest,
    TaskRemoveRequest,
    TaskRescheduleRequest,
)
from admin.services import AdminServices
from jobrunner.job_run_task import HANDLER as JOB_RUN_HANDLER
from jobrunner.run_events import RunRecorder
from store.jobs.models import RunStatus
from store.queue.models import Reschedule, TaskChange

router = APIRouter(prefix="/tasks", tags=["tasks"])


Complete = Annotated[
    Mutation, Depends(mutation("task.complete", Role.OPERATOR, target="task_id", risky=True))
]
Fail = Annotated[
    Mutation, Depends(mutation("task.fail", Role.OPERATOR, target="task_id", risky=True))
]
RunNow = Annotated[
    Mutation, Depends(mutation("task.run_now", Role.OPERATOR, target="task_id", risky=True))
]
RescheduleIt = Annotated[
    Mutation, Depends(mutation("task.reschedule", Role.OPERATOR, target="task_id", risky=True))
]
Remove = Annotated[
    Mutation,
    Depends(mutation("task.remove", Role.ADMIN, body_target="key", risky=True)),
]

TaskIdPath = Annotated[int, Path(ge=1, le=MAX_INT)]

RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such task"},
    409: {
        "model": ErrorBody,
        "description": "The task's state does not allow this (e.g. running under a lease)",
    },
}


def _result(action: str, change: TaskChange) -> TaskActionResult:
    after = change.after
    if after is not None:
        state = after.state.value
    else:
        state = "done" if action == "complete" else "removed"
    return TaskActionResult(
        action=action,  # type: ignore[arg-type]
        task_id=str(change.before.id),
        previous_state=change.before.state.value,
        state=state,
        task=None if after is None else TaskBody.of(after),
    )


async def _end_queued_runs(
    services: AdminServices, change: TaskChange, status: RunStatus, error: str
) -> int:
    """End the runs a ``job.run`` task that will not run any more left ``queued``."""
    if services.runs is None or change.before.handler != JOB_RUN_HANDLER:
        return 0
    recorder = RunRecorder(services.runs, services.events)
    ended = 0
    try:
        for run in await services.runs.find_by_task(change.before.id):
            if not run.status.is_final:
                await recorder.finish(run.run_id, status, error=error)
                ended += 1
    finally:
        await recorder.close()
    return ended


@router.post("/{task_id}/complete", response_model=TaskActionResult, responses=RESPONSES)
async def complete_task(
    task_id: TaskIdPath, audit: Complete, queue: QueueDep, services: ServicesDep
) -> TaskActionResult:
    """Complete a ready, scheduled or dead task without running it (no body): a keyless
    task is deleted, a keyed one kept as ``done`` for its key's retention."""
    change = await queue.complete_task(task_id)
    runs = await _end_queued_runs(
        services, change, RunStatus.CANCELLED, f"completed by {audit.actor} without running"
    )
    await audit.ok(f"from={change.before.state.value} runsEnded={runs}")
    return _result("complete", change)


@router.post("/{task_id}/fail", response_model=TaskActionResult, responses=RESPONSES)
async def fail_task(
    task_id: TaskIdPath,
    body: TaskFailRequest,
    audit: Fail,
    queue: QueueDep,
    services: ServicesDep,
) -> TaskActionResult:
    """Fail a ready or scheduled task for good: it goes to the dead-letter queue with
    ``reason`` as its ``lastError`` (where a task out of attempts goes)."""
    change = await queue.fail_task(task_id, body.reason)
    runs = await _end_queued_runs(
        services, change, RunStatus.FAILED, f"failed by {audit.actor}: {body.reason}"
    )
    await audit.ok(f"from={change.before.state.value} runsEnded={runs}")
    return _result("fail", change)


@router.post("/{task_id}/run-now", response_model=TaskActionResult, responses=RESPONSES)
async def run_task_now(task_id: TaskIdPath, audit: RunNow, queue: QueueDep) -> TaskActionResult:
    """Make a ready or scheduled task ready now (no body); a ready task keeps its place."""
    change = await queue.run_task_now(task_id)
    await audit.ok(f"from={change.before.state.value}")
    return _result("run-now", change)


@router.post("/{task_id}/reschedule", response_model=TaskActionResult, responses=RESPONSES)
async def reschedule_task(
    task_id: TaskIdPath, body: TaskRescheduleRequest, audit: RescheduleIt, queue: QueueDep
) -> TaskActionResult:
    """Change a ready or scheduled task's ``runAt``, ``priority``, ``attempts`` or
    ``maxAttempts`` (at least one; the others keep their values). ``attempts`` must stay
    below ``maxAttempts`` (400 naming the field)."""
    if body.model_fields_set.isdisjoint(("run_at", "priority", "attempts", "max_attempts")):
        raise InvalidRequest("give at least one of runAt, priority, attempts, maxAttempts")
    change = await queue.reschedule_task(
        task_id,
        Reschedule(
            run_at=body.run_at,
            priority=body.priority,
            attempts=body.attempts,
            max_attempts=body.max_attempts,
        ),
    )
    await audit.ok(f"from={change.before.state.value}")
    return _result("reschedule", change)


@router.post("/remove", response_model=TaskActionResult, responses=RESPONSES)
async def remove_task(
    body: TaskRemoveRequest, audit: Remove, queue: QueueDep, services: ServicesDep
) -> TaskActionResult:
    """Delete the task holding idempotency key ``key`` (ready, scheduled, dead or done),
    freeing the key; with ``queue``, only if the task is in that queue."""
    change = await queue.remove_task_by_key(body.key, queue=body.queue)
    runs = await _end_queued_runs(
        services, change, RunStatus.CANCELLED, f"task removed by {audit.actor}"
    )
    await audit.ok(f"taskId={change.before.id} from={change.before.state.value} runsEnded={runs}")
    return _result("remove", change)
