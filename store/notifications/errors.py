"""Errors of the notification rule store, under :class:`store.errors.StoreError`.

StoreError
 └── NotificationStoreError    something about persisted notification rules
      └── InvalidRule          a rule breaks a rule of its own (bad name, unknown event,
                               a URL that is not http(s), ...); a ValueError, ``field``
                               names the field at fault (as the API spells it)
"""

from __future__ import annotations

from store.errors import StoreError


class NotificationStoreError(StoreError):
    """Something about persisted notification rules went wrong."""


class InvalidRule(NotificationStoreError, ValueError):
    """A notification rule breaks a rule; ``field`` names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidRule], tuple[str, str]]:
        return (type(self), (self.field, self.message))
