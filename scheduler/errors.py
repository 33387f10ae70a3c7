"""Errors of the scheduler.

LongshoreError (store.errors)
 └── SchedulerError
      ├── SpecError          a schedule's spec or time zone is invalid (a 400 when saved);
      │                      also a ValueError. ``field`` names the part at fault
      │                      (``minute``, ``hour``, ``day-of-month``, ``month``,
      │                      ``day-of-week``, ``second``, ``every``, ``spec``,
      │                      ``timezone``) and ``value`` the offending text.
      ├── UnknownFactory     a schedule names a factory nobody registered (a 412)
      └── InvalidPreset      a ``name=spec,...`` preset list is malformed; also a ValueError
"""

from __future__ import annotations

from store.errors import LongshoreError


class SchedulerError(LongshoreError):
    """Root of the scheduler's errors."""


class SpecError(SchedulerError, ValueError):
    """A cron spec or time zone is invalid.

    ``str(error)`` reads like ``day-of-week: '8' is out of range 0-7``.
    """

    def __init__(self, field: str, value: str, message: str) -> None:
        super().__init__(f"{field}: {value!r} {message}")
        self.field = field
        self.value = value
        self.message = message

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, str, str]]:
        # Exceptions pickle through ``args`` by default, which holds the formatted message
        # only; keep the three parts so the error survives a process boundary intact.
        return (type(self), (self.field, self.value, self.message))


class UnknownFactory(SchedulerError):
    """A schedule names a factory that is not registered (a precondition failure: 412).

    ``factory`` is the missing name; register the factory (or the job of that name) first.
    """

    def __init__(self, factory: str) -> None:
        super().__init__(f"no factory named {factory!r} is registered")
        self.factory = factory

    def __reduce__(self) -> tuple[type[UnknownFactory], tuple[str]]:
        return (type(self), (self.factory,))


class InvalidPreset(SchedulerError, ValueError):
    """A ``name=spec,...`` preset list cannot be read; the message quotes the bad entry."""
