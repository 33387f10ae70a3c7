"""Hooks: your async callables, called at points of a task's life and on cron ticks.

For each task a worker runs, in this order:

1. ``before_run`` — the task was claimed, its handler is about to start;
2. one of ``completed``; ``failed`` (the attempt failed, the task will be retried at
   ``retry_at``); ``permanently_failed`` (the handler raised
   :class:`~store.errors.PermanentFailure`, or the payload did not validate);
3. ``dead_lettered`` — the task goes to the dead-letter queue (after
   ``permanently_failed``, or after ``failed`` attempts ran out: then instead of ``failed``);
4. ``after_run`` — always last, whatever the outcome.

``cron_tick`` is called when a schedule fires a task for one of your handlers (before the
task is enqueued). Hooks of one point run one after the other, in registration order, in
the task's worker slot. A hook that raises is logged and skipped: it never changes the
task's outcome nor stops the other hooks. Outcomes are called as the worker decides them;
the worker writes them to the database in its next result flush, milliseconds later.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scheduler.factories import FiringKind
from service.observer import TaskOutcome, Verdict
from store.queue.handlers import TaskContext
from store.queue.models import Task

if TYPE_CHECKING:
    from longshore.client import Client

__all__ = ["CronTick", "Hook", "HookDispatcher", "HookFunction", "TaskEvent", "call_hooks"]

logger = logging.getLogger(__name__)


class Hook(enum.StrEnum):
    """The points hooks can be registered at (see the module docstring for the order)."""

    BEFORE_RUN = "before_run"
    AFTER_RUN = "after_run"
    COMPLETED = "completed"
    FAILED = "failed"
    PERMANENTLY_FAILED = "permanently_failed"
    DEAD_LETTERED = "dead_lettered"
    CRON_TICK = "cron_tick"


@dataclass(frozen=True, kw_only=True)
class TaskEvent:
    """What a task hook receives.

    ``error`` is the text recorded as the task's last error and ``exception`` what the
    handler raised (both ``None`` before the run and on success); ``retry_at`` is set for
    ``failed``. ``client`` is the worker's client (e.g. to enqueue follow-up work).
    """

    hook: Hook
    task: Task
    worker_id: str
    client: Client
    error: str | None = None
    exception: BaseException | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class CronTick:
    """What a ``cron_tick`` hook receives: a schedule fired a task for ``handler``."""

    hook: Hook
    schedule: str
    fire_time: datetime
    kind: FiringKind
    handler: str
    payload: Mapping[str, Any]
    client: Client | None


HookFunction = Callable[[Any], Awaitable[None]]
"""An async callable taking a :class:`TaskEvent` (or a :class:`CronTick`)."""


async def call_hooks(hooks: Sequence[HookFunction], event: TaskEvent | CronTick) -> None:
    """Call each hook with ``event``; log what one raises and carry on."""
    for hook in hooks:
        try:
            await hook(event)
        except Exception:
            logger.exception(
                "hook failed",
                extra={"hook": event.hook.value, "function": getattr(hook, "__qualname__", "?")},
            )


def _outcome_hooks(outcome: TaskOutcome) -> tuple[Hook, ...]:
    if outcome.verdict is Verdict.COMPLETED:
        return (Hook.COMPLETED,)
    if outcome.verdict is Verdict.RETRY:
        return (Hook.FAILED,)
    if outcome.permanent:
        return (Hook.PERMANENTLY_FAILED, Hook.DEAD_LETTERED)
    return (Hook.DEAD_LETTERED,)


class HookDispatcher:
    """The worker's :class:`~service.observer.TaskObserver`: turns what the worker reports
    into calls of the registered hooks."""

    def __init__(self, hooks: Mapping[Hook, Sequence[HookFunction]], client: Client) -> None:
        self._hooks = hooks
        self._client = client

    def _event(self, hook: Hook, context: TaskContext, **fields: Any) -> TaskEvent:
        return TaskEvent(
            hook=hook, task=context.task, worker_id=context.worker_id, client=self._client, **fields
        )

    async def before_run(self, context: TaskContext) -> None:
        hooks = self._hooks.get(Hook.BEFORE_RUN)
        if hooks:
            await call_hooks(hooks, self._event(Hook.BEFORE_RUN, context))

    async def after_run(self, outcome: TaskOutcome) -> None:
        for hook in (*_outcome_hooks(outcome), Hook.AFTER_RUN):
            hooks = self._hooks.get(hook)
            if hooks:
                event = self._event(
                    hook,
                    outcome.context,
                    error=outcome.message,
                    exception=outcome.error,
                    retry_at=outcome.retry_at,
                )
                await call_hooks(hooks, event)
