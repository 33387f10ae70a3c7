"""What an operator may do to one task, whatever the backend (seed 004's task actions).

An operator's action never touches a task a worker holds a lease on, as graphile_worker's
``complete_jobs``, ``permanently_fail_jobs`` and ``reschedule_jobs`` leave locked jobs
alone: completing, failing, rescheduling or removing a running task would let its worker
finish an attempt the queue no longer knows (the task then runs twice, or a completion
lands on a task that was rescheduled). Such a request is refused with
:class:`~store.errors.TaskNotWaiting` (409 in the admin API) naming the worker and its
lease; taking tasks back from a worker that is gone is force-unlock's job
(:meth:`~store.queue.protocol.TaskQueue.force_unlock`).

Per action, the states it applies to (anything else is refused, the message saying why):

- ``complete``: ready, scheduled, dead. A keyless task is deleted; a keyed one becomes
  ``done`` (its key stays retained, as a worker's completion leaves it).
- ``fail``: ready, scheduled. The task goes where a task out of attempts goes: the
  dead-letter queue, with the reason as its ``last_error``.
- ``run_now``: ready, scheduled. ``run_at`` becomes now (a ready task keeps its place).
- ``reschedule``: ready, scheduled.
- ``remove`` (by key): ready, scheduled, dead, done. The task is deleted and its key freed.

Operator actions are not attempts: the queue's ``completed`` and ``failed`` counters, which
count workers' verdicts, are left alone.
"""

from __future__ import annotations

from store.errors import InvalidTask, TaskNotWaiting
from store.queue.models import Task, TaskState

WAITING = frozenset({TaskState.READY, TaskState.SCHEDULED})

ALLOWED: dict[str, frozenset[TaskState]] = {
    "complete": WAITING | {TaskState.DEAD},
    "fail": WAITING,
    "run_now": WAITING,
    "reschedule": WAITING,
    "remove": WAITING | {TaskState.DEAD, TaskState.DONE},
}

_VERB = {
    "complete": "complete",
    "fail": "fail",
    "run_now": "run now",
    "reschedule": "reschedule",
    "remove": "remove",
}

MAX_REASON = 4000
"""The longest reason an operator's ``fail`` records (characters)."""


def check_action(task: Task, action: str) -> None:
    """Raise :class:`TaskNotWaiting` when ``action`` may not touch ``task`` in its state."""
    if task.state in ALLOWED[action]:
        return
    verb = _VERB[action]
    if task.state is TaskState.RUNNING:
        until = task.lease_expires_at.isoformat() if task.lease_expires_at else "unknown"
        raise TaskNotWaiting(
            f"task {task.id} is running under the lease of worker {task.lease_owner!r} "
            f"(until {until}): an operator cannot {verb} a task a worker holds; wait for "
            "its attempt to end, or force-unlock that worker if it is gone"
        )
    if task.state is TaskState.DEAD:
        hint = (
            "it is already in the dead-letter queue"
            if action == "fail"
            else "replay it from the dead-letter queue instead"
        )
        raise TaskNotWaiting(f"task {task.id} is dead: cannot {verb} it; {hint}")
    raise TaskNotWaiting(
        f"task {task.id} is done (kept only for its key): there is nothing to {verb}"
    )


def check_attempts(task: Task, attempts: int | None, max_attempts: int | None) -> None:
    """Raise :class:`~store.errors.InvalidTask` when a reschedule would leave the task
    with no attempt to run."""
    used = task.attempts if attempts is None else attempts
    allowed = task.max_attempts if max_attempts is None else max_attempts
    if used >= allowed:
        field = "attempts" if attempts is not None else "maxAttempts"
        raise InvalidTask(
            f"{field}: attempts ({used}) must stay below maxAttempts ({allowed}), "
            "or the task could never run"
        )
