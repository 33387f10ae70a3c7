"""What the worker tells an observer about each task it runs (the library's hooks).

A :class:`TaskObserver` handed to :class:`service.worker.Worker` is called before each
handler starts and once its attempt has a verdict, inside the task's slot (a slow observer
slows the worker down, it never runs beside it unaccounted). Whatever an observer raises is
logged and ignored: observing a task never changes its outcome.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from store.queue.handlers import TaskContext

__all__ = ["TaskObserver", "TaskOutcome", "Verdict", "notify"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Verdict(enum.StrEnum):
    """What becomes of the task after this attempt."""

    COMPLETED = "completed"
    RETRY = "retry"
    """It failed and waits for another attempt at ``retry_at``."""
    DEAD = "dead"
    """It failed for good and goes to the dead-letter queue."""


@dataclass(frozen=True, kw_only=True)
class TaskOutcome:
    """How one attempt ended, as the worker will record it (in its next result flush).

    ``error`` is the exception the handler raised and ``message`` the text recorded as the
    task's ``last_error``; ``permanent`` says the handler itself declared the failure final
    (:class:`~store.errors.PermanentFailure`), as opposed to a task out of attempts.
    """

    context: TaskContext
    verdict: Verdict
    error: BaseException | None = None
    message: str | None = None
    retry_at: datetime | None = None
    permanent: bool = False


class TaskObserver(Protocol):
    """Receives the life of every task a worker runs; see the module docstring."""

    async def before_run(self, context: TaskContext) -> None:
        """The task was claimed and its handler is about to start."""
        ...

    async def after_run(self, outcome: TaskOutcome) -> None:
        """The handler returned or raised; ``outcome`` is what the worker records."""
        ...


async def notify(call: Callable[[T], Awaitable[None]], value: T, *, task_id: int) -> None:
    """Call an observer method, logging (never raising) what it raises."""
    try:
        await call(value)
    except Exception:
        logger.exception("task observer failed", extra={"task_id": task_id})
