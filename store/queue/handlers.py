"""The handler contract: what a handler receives and how it says a failure is final.

A handler is an ``async`` callable taking a :class:`TaskContext`. Returning completes the
task; raising fails the attempt, which is retried by the task's policy, except
:class:`~store.errors.PermanentFailure` (or a subclass), which dead-letters it at once. The
worker (``service.worker``) calls handlers; the job runner's ``job.run`` is one of them, so
both import the contract from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from store.errors import PermanentFailure
from store.queue.models import LateOutcome, Task

__all__ = ["Handler", "LateResultHook", "PermanentFailure", "TaskContext"]


@dataclass(frozen=True, kw_only=True)
class TaskContext:
    """What a handler receives: the claimed task and the worker that runs it."""

    task: Task
    worker_id: str


Handler = Callable[[TaskContext], Awaitable[None]]
"""A task handler: completes by returning, fails by raising."""


LateResultHook = Callable[[TaskContext, LateOutcome], Awaitable[None]]
"""Told when a success of the handler's was written after its lease lapsed (any outcome
but ``written``), with the context of that attempt: e.g. to record it on the attempt's run."""
