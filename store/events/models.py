"""Value objects of the event store: events, audit entries, filters, options.

Everything here is frozen and keyword-only; timestamps are timezone-aware (UTC) and kept to
the millisecond, as they are stored (``atMs``).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from store.events.errors import InvalidEvent

MAX_KEY_LENGTH = 512
AUDIT_FIELDS = ("actor", "requestId", "action", "target", "status", "payloadHash", "detail")
"""The ``data`` fields of an audit event, in the order the store writes them."""
EVENT_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")


class Stream(enum.StrEnum):
    """The streams of the store; each has its own segment files (``<dir>/<stream>/``)."""

    RUNS = "runs"
    """Job/run events, keyed by job name, also indexed by run id."""
    SCHEDULES = "schedules"
    """Schedule events, keyed by schedule name."""
    AUDIT = "audit"
    """Audit entries of admin mutations, keyed by target."""


class EventType(enum.StrEnum):
    """Event names (past tense) the service emits. Other names matching ``EVENT_TYPE``
    (``^[A-Z][A-Za-z0-9]{0,63}$``) are accepted too, so new ones need no store change."""

    RUN_QUEUED = "RunQueued"
    RUN_FETCH_STARTED = "RunFetchStarted"
    RUN_BUILD_STARTED = "RunBuildStarted"
    RUN_STARTED = "RunStarted"
    RUN_OUTPUT_EMITTED = "RunOutputEmitted"
    RUN_SECRET_USED = "RunSecretUsed"  # noqa: S105 (an event name)
    RUN_WAITING = "RunWaiting"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    RUN_TIMED_OUT = "RunTimedOut"
    RUN_CANCELLED = "RunCancelled"
    RUN_LATE_RESULT = "RunLateResult"
    """A success of the run's attempt was written after its lease lapsed."""
    SCHEDULE_FIRED = "ScheduleFired"
    SCHEDULE_CREATED = "ScheduleCreated"
    SCHEDULE_DELETED = "ScheduleDeleted"
    SCHEDULE_PAUSED = "SchedulePaused"
    SCHEDULE_RESUMED = "ScheduleResumed"
    AUDIT_RECORDED = "AuditRecorded"
    SCHEDULE_MISSED = "ScheduleMissed"
    NOTIFICATION_DELIVERED = "NotificationDelivered"
    NOTIFICATION_FAILED = "NotificationFailed"
    NOTIFICATION_DEAD_LETTERED = "NotificationDeadLettered"


class Durability(enum.StrEnum):
    """When ``append`` returns (``WORKER_JOB_EVENT_DURABILITY``).

    - ``always`` (default): after the batch holding the event was written *and* fsynced.
      Survives ``kill -9`` and power loss.
    - ``interval``: after the write; a background task fsyncs every ``fsync_interval``.
      Survives ``kill -9``; a power loss may lose the last interval.
    - ``none``: after the write; fsync only on segment roll and close. Survives ``kill -9``.
    """

    ALWAYS = "always"
    INTERVAL = "interval"
    NONE = "none"


class AuditStatus(enum.StrEnum):
    OK = "ok"
    ERROR = "error"


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    if moment.tzinfo is None:
        raise InvalidEvent("timestamps must be timezone-aware")
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


_VALID_TYPES: set[str] = set()
"""Event types already checked against ``EVENT_TYPE`` (the same few names come back)."""


def _check_key(value: str, what: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH:
        raise InvalidEvent(f"{what} must be a string of at most {MAX_KEY_LENGTH} characters")


@dataclass(frozen=True, kw_only=True, slots=True)
class NewEvent:
    """An event to append; the store gives it its id and timestamp.

    ``data`` must be JSON-serialisable. ``run_id`` (run stream) makes the event findable
    by run as well as by ``key`` (the job name).
    """

    stream: Stream
    key: str
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None

    def __post_init__(self) -> None:
        if type(self.stream) is not Stream:
            try:
                object.__setattr__(self, "stream", Stream(self.stream))
            except ValueError:
                raise InvalidEvent(f"unknown stream {self.stream!r}") from None
        if type(self.key) is not str or len(self.key) > MAX_KEY_LENGTH:
            _check_key(self.key, "key")
        kind = self.type
        if type(kind) is not str:
            if not isinstance(kind, str):
                raise InvalidEvent(f"event type must be a string, got {kind!r}")
            object.__setattr__(self, "type", kind := str(kind))
        if kind not in _VALID_TYPES:
            if not EVENT_TYPE.match(kind):
                raise InvalidEvent(f"event type must match {EVENT_TYPE.pattern}, got {kind!r}")
            if len(_VALID_TYPES) < 4096:
                _VALID_TYPES.add(kind)
        run_id = self.run_id
        if run_id is not None and (type(run_id) is not str or len(run_id) > MAX_KEY_LENGTH):
            _check_key(run_id, "run_id")
        if type(self.data) is not dict and not isinstance(self.data, Mapping):
            raise InvalidEvent("data must be a mapping")

    @classmethod
    def run(cls, type: str, *, job: str, run_id: str, **data: Any) -> NewEvent:
        """A run event of job ``job`` (e.g. ``NewEvent.run(EventType.RUN_STARTED, ...)``)."""
        return cls(stream=Stream.RUNS, key=job, type=type, run_id=run_id, data=data)

    @classmethod
    def schedule(cls, type: str, *, schedule: str, **data: Any) -> NewEvent:
        """A schedule event of schedule ``schedule``."""
        return cls(stream=Stream.SCHEDULES, key=schedule, type=type, data=data)


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """An appended event: durable ``id`` (unique and increasing across all streams)."""

    id: int
    stream: Stream
    key: str
    type: str
    at: datetime
    data: Mapping[str, Any]
    run_id: str | None = None

    @property
    def at_ms(self) -> int:
        return to_ms(self.at)

    def to_json(self) -> dict[str, Any]:
        """The camelCase JSON object used by exports and the live stream."""
        out: dict[str, Any] = {
            "id": self.id,
            "stream": self.stream.value,
            "key": self.key,
            "type": self.type,
            "atMs": self.at_ms,
        }
        if self.run_id is not None:
            out["runId"] = self.run_id
        out["data"] = dict(self.data)
        return out


_EVENT_SLOTS = tuple(
    Event.__dict__[name].__set__ for name in ("id", "stream", "key", "type", "at", "data", "run_id")
)


def make_event(
    event_id: int,
    stream: Stream,
    key: str,
    kind: str,
    at: datetime,
    data: Mapping[str, Any],
    run_id: str | None,
) -> Event:
    """``Event(...)`` for the store's own use, about twice as fast (frozen dataclasses set
    each field through ``object.__setattr__``; this fills the slots directly)."""
    event: Event = object.__new__(Event)
    set_id, set_stream, set_key, set_type, set_at, set_data, set_run = _EVENT_SLOTS
    set_id(event, event_id)
    set_stream(event, stream)
    set_key(event, key)
    set_type(event, kind)
    set_at(event, at)
    set_data(event, data)
    set_run(event, run_id)
    return event


def payload_hash(body: bytes) -> str:
    """sha256 hex digest of a raw request body (the audit ``payload_hash``)."""
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """One audited admin mutation (SPEC §6). ``id`` is the durable event id."""

    id: int
    at: datetime
    actor: str
    request_id: str
    action: str
    target: str
    status: AuditStatus
    payload_hash: str
    detail: str

    @classmethod
    def from_event(cls, event: Event) -> AuditEntry:
        data = event.data
        return cls(
            id=event.id,
            at=event.at,
            actor=str(data.get("actor", "")),
            request_id=str(data.get("requestId", "")),
            action=str(data.get("action", "")),
            target=str(data.get("target", "")),
            status=AuditStatus(data.get("status", "error")),
            payload_hash=str(data.get("payloadHash", "")),
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class EventFilter:
    """Which events a query or subscription wants; ``None`` means any.

    ``key`` and ``run_id`` use the per-key indexes, so they never scan the whole history.
    """

    streams: frozenset[Stream] | None = None
    key: str | None = None
    run_id: str | None = None
    types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.streams is not None:
            try:
                object.__setattr__(self, "streams", frozenset(Stream(s) for s in self.streams))
            except ValueError as exc:
                raise InvalidEvent(f"unknown stream in filter: {exc}") from None
        if self.types is not None:
            object.__setattr__(self, "types", frozenset(self.types))

    def matches(self, event: Event) -> bool:
        return (
            (self.streams is None or event.stream in self.streams)
            and (self.key is None or event.key == self.key)
            and (self.run_id is None or event.run_id == self.run_id)
            and (self.types is None or event.type in self.types)
        )


class ExportFormat(enum.StrEnum):
    JSONL = "jsonl"
    JSON = "json"
    CSV = "csv"


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditQuery:
    """Filters of the audit export and listing (exact matches; ``since`` inclusive,
    ``until`` exclusive). ``limit=None`` means the store's export cap."""

    action: str | None = None
    target: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        _check_window(self.since, self.until, self.limit)


@dataclass(frozen=True, kw_only=True, slots=True)
class EventQuery:
    """Filters of an event export (one stream; optional key, run, types, time window)."""

    stream: Stream = Stream.RUNS
    key: str | None = None
    run_id: str | None = None
    types: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "stream", Stream(self.stream))
        except ValueError:
            raise InvalidEvent(f"unknown stream {self.stream!r}") from None
        _check_window(self.since, self.until, self.limit)


def _check_window(since: datetime | None, until: datetime | None, limit: int | None) -> None:
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise InvalidEvent("since/until must be timezone-aware")
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise InvalidEvent(f"limit must be a positive integer, got {limit!r}")
