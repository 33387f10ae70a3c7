"""Errors raised by the store, and the root of every Longshore error.

    LongshoreError                 root of every error Longshore raises on purpose
     └── StoreError                something about persisted state
          ├── StoreUnavailable     the database cannot be reached or the connection dropped;
          │                        the operation may be retried later (nothing was acknowledged)
          ├── MigrationError       the schema cannot be brought to the expected version
          ├── InvalidTask          a task (or a filter) breaks a rule; also a ValueError
          ├── TaskNotFound         no task with that id (in the state the call needs)
          └── TaskNotWaiting       the task exists but is not waiting (running, dead, done)
     └── PermanentFailure          raised by a handler: retrying cannot help, the task goes
                                   straight to the dead-letter queue

Each package keeps its own errors in its ``errors.py`` under this root: ``store.jobs``,
``store.schedules`` and ``store.events`` (under ``StoreError``), ``jobrunner``, ``scheduler``,
``admin`` and ``service``.

Drivers' own exceptions never leave a backend: adapters translate them with
``raise ... from exc`` so callers only ever handle this tree.
"""

from __future__ import annotations


class LongshoreError(Exception):
    """Root of every error Longshore raises on purpose."""


class StoreError(LongshoreError):
    """Something about persisted state went wrong."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, or the connection was lost mid-operation.

    Nothing the failed call would have written is acknowledged; callers may retry.
    """


class MigrationError(StoreError):
    """The database schema cannot be brought to the version this code expects."""


class InvalidTask(StoreError, ValueError):
    """A task, filter or queue setting breaks a rule; the message names the field."""


class TaskNotFound(StoreError):
    """No task with the given id exists (in the state the operation requires)."""


class TaskNotWaiting(StoreError):
    """The task exists but is not waiting, so it cannot be cancelled or replaced."""


class PermanentFailure(LongshoreError):
    """Raised by a handler for a failure that retrying cannot fix (bad input, failed
    verification): the task goes straight to the dead-letter queue."""
