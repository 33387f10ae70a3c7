"""Errors of the job runner.

LongshoreError (store.errors)
 └── JobRunnerError
      ├── InvalidDefinition      a job definition breaks a rule (a 400 when saved)
      │    ├── UnknownSource     its source type is not registered; also a LookupError
      │    ├── UnknownSecret     it is granted a secret that does not exist
      │    └── InvalidParameter  a parameter value breaks its declaration, or a manual
      │                          run overrides a parameter that is not overridable
      ├── JobNotFound            a run was asked of a job that has no definition (a 404);
      │                          also a LookupError
      ├── WaitCancelled          the run was cancelled while it waited for its
      │                          infrastructure (it ends ``cancelled``)
      ├── JobRunFailed           the job's container failed (non-zero exit, timeout, output
      │                          limit): retried while the task has attempts left
      ├── VerificationError      the source cannot be trusted; retrying cannot help,
      │    │                     the run fails permanently (dead-letter queue)
      │    ├── NotAllowed        scheme, host, repository or network not allowlisted;
      │    │                     private address refused; path escapes its root
      │    ├── ChecksumMismatch  the SHA256 of the bytes received is not the pinned one
      │    ├── UnsafeArchive     an archive entry breaks the archive rules or caps
      │    ├── SourceRejected    e.g. a tag that does not exist or is not a tag, a
      │    │                     download larger than the cap
      │    └── BuildFailed       the job's Dockerfile/context does not build (a failing
      │                          step, a missing file or base image): the same source
      │                          fails the same way, so it is not retried
      └── InfrastructureError    something outside the source failed; retried with backoff
           ├── FetchFailed       network error, server error, deadline passed
           └── EngineUnavailable the Docker engine cannot be reached or failed
"""

from __future__ import annotations

from collections.abc import Sequence

from store.errors import LongshoreError


class JobRunnerError(LongshoreError):
    """Root of the job runner's errors."""


class InvalidDefinition(JobRunnerError, ValueError):
    """A job definition breaks a rule; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownSecret(InvalidDefinition):
    """A definition grants a secret that does not exist (``field``: ``secrets[i].name``)."""

    def __init__(self, field: str, name: str) -> None:
        super().__init__(field, f"no secret called {name!r}")
        self.name = name


class InvalidParameter(InvalidDefinition):
    """A run's value of a parameter breaks the job's declaration of it, or may not be given
    there (``field``: ``params.<name>``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"params.{name}", message)
        self.name = name


class UnknownSource(InvalidDefinition, LookupError):
    """A source type that no module registers (see :mod:`jobrunner.sources.registry`)."""

    def __init__(self, name: object, known: Sequence[str]) -> None:
        super().__init__("source", f"must be one of {', '.join(known)}, got {name!r}")
        self.name = name


class JobNotFound(JobRunnerError, LookupError):
    """A run was asked of a job that has no definition."""

    def __init__(self, name: str) -> None:
        super().__init__(f"job {name!r} not found")
        self.name = name


class JobRunFailed(JobRunnerError):
    """The job's container failed (non-zero exit, timeout, output limit): retried while the
    task has attempts left."""


class WaitCancelled(JobRunnerError):
    """The run was cancelled while it waited for its infrastructure
    (:mod:`jobrunner.infra_wait`); the message says what it waited for."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"cancelled while {detail}")


class VerificationError(JobRunnerError):
    """The source cannot be trusted; retrying cannot help."""


class NotAllowed(VerificationError):
    """A scheme, host, repository, network or path that is not allowed."""


class ChecksumMismatch(VerificationError):
    """The SHA256 of the received bytes differs from the pinned one."""


class UnsafeArchive(VerificationError):
    """An archive entry breaks the archive rules (names, types, links, caps)."""


class SourceRejected(VerificationError):
    """The source exists but is not acceptable (no such tag, larger than the cap, ...)."""


class BuildFailed(VerificationError):
    """The image cannot be built from the job's source; the message ends with the tail of
    the build log. Permanent: rebuilding the same source fails the same way."""


class InfrastructureError(JobRunnerError):
    """A failure outside the source's content; worth retrying later."""


class FetchFailed(InfrastructureError):
    """A download or fetch failed for a transient reason (network, server, deadline)."""


class EngineUnavailable(InfrastructureError):
    """The Docker engine cannot be reached or failed to do its part."""


def describe(exc: BaseException) -> str:
    """How an error reads in a run's ``error`` and in logs: its type, then its message."""
    return f"{type(exc).__name__}: {exc}"
