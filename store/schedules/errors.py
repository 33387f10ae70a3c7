"""Errors of the schedule store, under :class:`store.errors.StoreError`.

    StoreError
     └── ScheduleStoreError        something about persisted schedules
          ├── InvalidSchedule      a schedule breaks a storage rule (bad name, unknown policy,
          │                        negative grace, payload not a JSON object); a ValueError,
          │                        ``field`` names the field at fault
          └── ScheduleNotFound     no schedule with that name

Whether a spec or time zone is *valid cron* is the scheduler's rule
(``scheduler.errors.SpecError``); the store only keeps what it is given.
"""

from __future__ import annotations

from store.errors import StoreError


class ScheduleStoreError(StoreError):
    """Something about persisted schedules went wrong."""


class InvalidSchedule(ScheduleStoreError, ValueError):
    """A schedule breaks a storage rule; ``field`` names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidSchedule], tuple[str, str]]:
        return (type(self), (self.field, self.message))


class ScheduleNotFound(ScheduleStoreError):
    """No schedule with the given name exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}")
        self.name = name

    def __reduce__(self) -> tuple[type[ScheduleNotFound], tuple[str]]:
        return (type(self), (self.name,))
