"""Seed 003's status vocabulary, and how Longshore's run and task states map onto it.

A seed 003 client styles ``queued``, ``running``, ``completed``, ``failed``, ``cancelled``,
``deadline`` (timed out), ``invalid`` (refused before it could run) and ``rate_limited``;
anything else shows as "unknown". The seed-shaped routes (``/jobs/events``,
``/schedules/events`` and the ``job_events`` / ``schedule_events`` snapshots) speak this
vocabulary; Longshore's own routes (``/runs``, the fine-grained stream events) keep
Longshore's (``succeeded``, ``timed_out``, ``fetching``, ...).
"""

from __future__ import annotations

import enum
from typing import Final

from jobrunner.errors import (
    ChecksumMismatch,
    InvalidDefinition,
    NotAllowed,
    SourceRejected,
    UnknownSource,
    UnsafeArchive,
)
from store.jobs.models import Run, RunStatus
from store.queue.models import TaskState


class SeedStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEADLINE = "deadline"
    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"


_REFUSALS: Final = tuple(
    f"{error.__name__}: "
    for error in (
        NotAllowed,
        ChecksumMismatch,
        UnsafeArchive,
        SourceRejected,
        InvalidDefinition,
        UnknownSource,
    )
)
"""How the error of a run refused by verification begins: the runner records failures as
``"<error type>: <message>"`` (:func:`jobrunner.errors.describe`). A source that was
fetched and verified but does not build (``BuildFailed``) is a failure, not a refusal."""

_RUN_STATUS: Final = {
    RunStatus.QUEUED: SeedStatus.QUEUED,
    RunStatus.FETCHING: SeedStatus.RUNNING,
    RunStatus.BUILDING: SeedStatus.RUNNING,
    RunStatus.RUNNING: SeedStatus.RUNNING,
    RunStatus.SUCCEEDED: SeedStatus.COMPLETED,
    RunStatus.FAILED: SeedStatus.FAILED,
    RunStatus.TIMED_OUT: SeedStatus.DEADLINE,
    RunStatus.CANCELLED: SeedStatus.CANCELLED,
}

_TASK_STATE: Final = {
    TaskState.READY: SeedStatus.QUEUED,
    TaskState.SCHEDULED: SeedStatus.QUEUED,
    TaskState.RUNNING: SeedStatus.RUNNING,
    TaskState.DONE: SeedStatus.COMPLETED,
    TaskState.DEAD: SeedStatus.FAILED,
}


def refused(error: str | None) -> bool:
    """Whether a failed run's ``error`` says verification refused it before anything ran:
    a source or host not allowed, a checksum mismatch, a hostile archive, a rejected source
    (no such tag, too large, a Dockerfile against the build policy), or a definition the
    runner no longer accepts."""
    return error is not None and error.startswith(_REFUSALS)


def run_status(run: Run) -> SeedStatus:
    """queued → ``queued``; fetching, building, running → ``running``; succeeded →
    ``completed``; failed → ``failed``, or ``invalid`` when refused by verification;
    timed_out → ``deadline``; cancelled → ``cancelled``."""
    if run.status is RunStatus.FAILED and refused(run.error):
        return SeedStatus.INVALID
    return _RUN_STATUS[run.status]


def task_status(state: TaskState) -> SeedStatus:
    """ready, scheduled → ``queued``; running → ``running``; done → ``completed``; dead →
    ``failed``."""
    return _TASK_STATE[state]
