"""Errors of the job and run stores, under :class:`store.errors.StoreError`.

    StoreError
     └── JobStoreError             something about job definitions or runs
          ├── InvalidJobRecord     a definition, run, update or filter the store cannot keep
          │                        (bad job name, unknown status, negative page); a ValueError
          ├── RunNotFound          no run with that id
          ├── RunAlreadyExists     a run with that id was already recorded
          └── IllegalTransition    the run cannot change that way: it has finished, or the
                                   move is not forwards

The rules of a *valid* job definition (allowlists, schemes, path escapes) are the job
runner's: ``jobrunner.errors.InvalidDefinition``.
"""

from __future__ import annotations

from store.errors import StoreError
from store.jobs.models import RunStatus


class JobStoreError(StoreError):
    """Something about job definitions or runs went wrong."""


class InvalidJobRecord(JobStoreError, ValueError):
    """A definition, run, update or filter breaks a storage rule; the message names it."""


class RunNotFound(JobStoreError):
    """No run with the given id exists."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunAlreadyExists(JobStoreError):
    """A run with the given id was already recorded."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"a run with id {run_id!r} already exists")
        self.run_id = run_id


class IllegalTransition(JobStoreError):
    """The run cannot move from its current status to the requested one."""

    def __init__(self, run_id: str, current: RunStatus, target: RunStatus | None = None) -> None:
        if target is None:
            message = f"run {run_id!r} has finished ({current.value}) and can no longer change"
        else:
            if current.is_final:
                reason = "it has finished"
            elif target == current:
                reason = "it is already there"
            else:
                reason = "a run never goes back a stage"
            message = (
                f"run {run_id!r} cannot move from {current.value!r} to {target.value!r}: {reason}"
            )
        super().__init__(message)
        self.run_id = run_id
        self.current = current
        self.target = target
