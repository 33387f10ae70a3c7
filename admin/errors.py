"""Errors of the admin API and the one table that maps error types to HTTP statuses.

    LongshoreError
     ├── AdminError                 refused by the admin layer itself
     │    ├── InvalidRequest        400 a field breaks a rule (the message names it)
     │    ├── NotAuthenticated      401 no or wrong credentials
     │    ├── Forbidden             403 the role does not allow it
     │    ├── ApprovalRequired      403 a risky mutation without a valid X-Admin-Approval
     │    ├── CrossSiteRequest      403 a mutation a browser sent from another site
     │    ├── NotFound              404 no such resource
     │    ├── Conflict              409 the resource is not in a state that allows it
     │    ├── PreconditionFailed    412 e.g. a missing schedule factory
     │    ├── BodyTooLarge          413 more than the body limit
     │    ├── UnsupportedMediaType  415 a form body (what a cross-site form can send)
     │    ├── RangeNotSatisfiable   416 a byte range that selects nothing of the file
     │    └── GuardrailExceeded     429 a replay/run cap
     ├── StoreError                 from the store, mapped below (InvalidTask 400, ...)
     ├── JobRunnerError             InvalidDefinition 400, JobNotFound 404
     └── SchedulerError             SpecError 400, UnknownFactory 412

Every error response carries the envelope ``{"requestId", "error": {"code", "message"}}``.
"""

from __future__ import annotations

from jobrunner.errors import InvalidDefinition, JobNotFound
from scheduler.errors import SpecError, UnknownFactory
from store.errors import (
    InvalidTask,
    LongshoreError,
    StoreUnavailable,
    TaskNotFound,
    TaskNotWaiting,
)
from store.events.errors import EventStoreClosed, InvalidEvent
from store.jobs.errors import IllegalTransition, InvalidJobRecord, RunNotFound
from store.schedules.errors import InvalidSchedule, ScheduleNotFound


class AdminError(LongshoreError):
    """Refused by the admin layer; ``code`` is the envelope's snake_case code."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(AdminError):
    code = "invalid_request"


class NotAuthenticated(AdminError):
    code = "unauthenticated"


class Forbidden(AdminError):
    code = "forbidden"


class ApprovalRequired(Forbidden):
    code = "approval_required"


class CrossSiteRequest(Forbidden):
    code = "cross_site_request"


class CsrfRejected(Forbidden):
    code = "csrf_rejected"


class ReadOnly(Forbidden):
    code = "read_only"


class NotFound(AdminError):
    code = "not_found"


class Conflict(AdminError):
    code = "conflict"


class PreconditionFailed(AdminError):
    code = "precondition_failed"


class BodyTooLarge(AdminError):
    code = "body_too_large"


class GuardrailExceeded(AdminError):
    code = "limit_exceeded"


class UnsupportedMediaType(AdminError):
    code = "unsupported_media_type"


class RangeNotSatisfiable(AdminError):
    """The range is valid syntax but selects no byte of the file."""

    code = "range_not_satisfiable"

    def __init__(self, header: str, size: int) -> None:
        super().__init__(f"range {header.strip()!r} selects no byte of a {size}-byte file")
        self.size = size


STATUS: dict[type[Exception], tuple[int, str]] = {
    InvalidRequest: (400, InvalidRequest.code),
    NotAuthenticated: (401, NotAuthenticated.code),
    ApprovalRequired: (403, ApprovalRequired.code),
    CrossSiteRequest: (403, CrossSiteRequest.code),
    CsrfRejected: (403, CsrfRejected.code),
    ReadOnly: (403, ReadOnly.code),
    Forbidden: (403, Forbidden.code),
    NotFound: (404, NotFound.code),
    Conflict: (409, Conflict.code),
    PreconditionFailed: (412, PreconditionFailed.code),
    BodyTooLarge: (413, BodyTooLarge.code),
    GuardrailExceeded: (429, GuardrailExceeded.code),
    UnsupportedMediaType: (415, UnsupportedMediaType.code),
    RangeNotSatisfiable: (416, RangeNotSatisfiable.code),
    InvalidTask: (400, "invalid_request"),
    InvalidEvent: (400, "invalid_request"),
    TaskNotFound: (404, "not_found"),
    TaskNotWaiting: (409, "conflict"),
    InvalidDefinition: (400, "invalid_request"),
    JobNotFound: (404, "not_found"),
    InvalidJobRecord: (400, "invalid_request"),
    RunNotFound: (404, "not_found"),
    IllegalTransition: (409, "conflict"),
    SpecError: (400, "invalid_request"),
    InvalidSchedule: (400, "invalid_request"),
    ScheduleNotFound: (404, "not_found"),
    UnknownFactory: (412, "precondition_failed"),
    StoreUnavailable: (503, "unavailable"),
    EventStoreClosed: (503, "unavailable"),
}
"""Error type -> (status, code); the most specific class in an error's MRO wins."""

INTERNAL = (500, "internal_error")


def status_of(exc: BaseException) -> tuple[int, str]:
    """The (status, code) of an error: the table entry of the nearest class in its MRO;
    an :class:`AdminError` keeps its own ``code``."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            status, code = STATUS[cls]
            if isinstance(exc, AdminError):
                code = exc.code
            return status, code
    return INTERNAL


def envelope(request_id: str, code: str, message: str) -> dict[str, object]:
    """The JSON body of every error response (SPEC §7)."""
    return {"requestId": request_id, "error": {"code": code, "message": message}}
