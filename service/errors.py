"""Errors of the composition root.

LongshoreError (store.errors)
 └── ServiceError
      └── SettingsError    an environment variable has a value that cannot be used
"""

from __future__ import annotations

from store.errors import LongshoreError


class ServiceError(LongshoreError):
    """Something about starting or wiring the service went wrong."""


class SettingsError(ServiceError):
    """A setting is invalid; the message names the environment variable."""
