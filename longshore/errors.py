"""Errors of the library.

LongshoreError (store.errors)
 ├── LibraryError          the library was used in a way it cannot honour (a transactional
 │                         enqueue on SQLite, a handler registered twice, a client not open)
 └── PermanentFailure (store.errors)
      └── InvalidPayload   a task's payload does not validate as its handler's payload type:
                           dead-lettered at once, with the validation errors as its last error
"""

from __future__ import annotations

from store.errors import LongshoreError, PermanentFailure

__all__ = ["InvalidPayload", "LibraryError"]


class LibraryError(LongshoreError):
    """The library was asked for something it cannot do; the message says why."""


class InvalidPayload(PermanentFailure):
    """The payload of a task does not validate as its handler's payload type."""
