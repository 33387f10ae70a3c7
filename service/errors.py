"""Errors of the composition root.

LongshoreError (store.errors)
 ├── ServiceError
 │    ├── SettingsError       an environment variable has a value that cannot be used
 │    ├── AdminApiFailed      the admin API server could not start or stopped on its own
 │    ├── ApiError            (service.cli.api) the admin API refused a CLI request
 │    ├── DiagnosticFailure   the failure ``builtin.fail`` was asked to raise (retried)
 │    └── DeliveryFailed      a notification's receiver could not be reached or did not
 │                            answer 2xx (retried)
 └── PermanentFailure (store.errors)
      ├── UnknownHandler      a task names a handler this worker does not have
      ├── RuleGone            a notification's rule was deleted before it was delivered
      └── RuleSecretUnusable  a notification's rule secret does not open with the secrets
                              key (another key, or altered): nothing is sent
"""

from __future__ import annotations

from store.errors import LongshoreError, PermanentFailure


class ServiceError(LongshoreError):
    """Something about starting or wiring the service went wrong."""


class SettingsError(ServiceError):
    """A setting is invalid; the message names the environment variable."""


class AdminApiFailed(ServiceError):
    """The admin API server could not start or stopped on its own."""


class DiagnosticFailure(ServiceError):
    """The failure ``builtin.fail`` was asked to raise."""


class DeliveryFailed(ServiceError):
    """A notification's receiver could not be reached or did not answer with 2xx."""


class RuleGone(PermanentFailure):
    """The rule of a notification no longer exists: there is nowhere to deliver it."""


class RuleSecretUnusable(PermanentFailure):
    """A rule's sealed secret does not open with the secrets key: the delivery cannot be
    signed, and retrying with the same key cannot help."""


class UnknownHandler(PermanentFailure):
    """The task names a handler this worker does not have."""
