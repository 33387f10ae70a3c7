"""Value objects of the durable task queue.

Everything here is frozen and keyword-only; timestamps are timezone-aware (UTC).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from store.errors import InvalidTask
from store.queue.retry import RetryPolicy

QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
HANDLER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_KEY_LENGTH = 512
MAX_PAYLOAD_BYTES = 1024 * 1024

DEFAULT_QUEUE = "default"


class Priority(enum.IntEnum):
    """Named priority levels (lower runs first), as in the backfill seed."""

    EMERGENCY = -20
    FAST_HIGH = -10
    FAST_DEFAULT = 0
    BULK_DEFAULT = 10
    BULK_LOW = 20
    BULK_LOWEST = 30

    @classmethod
    def parse(cls, value: str | int) -> int:
        """Accept a level name (``fast_high``) or an integer in [-1000, 1000]."""
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            try:
                return int(cls[text.upper()])
            except KeyError:
                pass
            try:
                number = int(text)
            except ValueError:
                names = ", ".join(level.name.lower() for level in cls)
                raise InvalidTask(
                    f"priority must be an integer or one of {names}, got {text!r}"
                ) from None
        if not -1000 <= number <= 1000:
            raise InvalidTask(f"priority must be between -1000 and 1000, got {number}")
        return number


class KeyMode(enum.StrEnum):
    """What enqueueing with an idempotency key does when a task with that key exists.

    - ``replace``: a waiting task is updated in place (payload, priority, run time, ...) and
      starts afresh (``attempts`` 0, no ``last_error``); a running, dead or finished one
      loses its key and a new task is created.
    - ``preserve_run_at``: like ``replace`` but a waiting task keeps its run time.
    - ``dedupe``: the existing task (in any state, finished included while its key is
      retained) is returned unchanged and nothing is written.
    """

    REPLACE = "replace"
    PRESERVE_RUN_AT = "preserve_run_at"
    DEDUPE = "dedupe"

    @classmethod
    def parse(cls, value: str) -> KeyMode:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(mode.value for mode in cls)
            raise InvalidTask(f"key mode must be one of {names}, got {value!r}") from None


class TaskState(enum.StrEnum):
    """Where a task is in its life.

    ``ready`` and ``scheduled`` are both *waiting* in storage; they differ only by whether
    ``run_at`` has passed. ``done`` tasks exist only while their idempotency key is retained
    (tasks without a key are deleted when they complete).
    """

    READY = "ready"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    DEAD = "dead"
    DONE = "done"


class EnqueueOutcome(enum.StrEnum):
    CREATED = "created"
    REPLACED = "replaced"
    DEDUPLICATED = "deduplicated"


def check_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise :class:`InvalidTask`."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidTask(
            f"queue name {name!r} is invalid: use 1-128 letters, digits, '.', '_', ':' or '-'"
        )
    return name


@dataclass(frozen=True, kw_only=True)
class NewTask:
    """A task to enqueue. Validated on construction."""

    handler: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    run_at: datetime | None = None
    key: str | None = None
    key_mode: KeyMode = KeyMode.REPLACE
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not isinstance(self.handler, str) or not HANDLER_NAME.fullmatch(self.handler):
            raise InvalidTask(
                f"handler name {self.handler!r} is invalid: use 1-128 letters, digits, "
                "'.', '_', ':' or '-'"
            )
        check_queue_name(self.queue)
        if not isinstance(self.payload, Mapping):
            raise InvalidTask(f"payload must be a JSON object, got {type(self.payload).__name__}")
        try:
            encoded = json.dumps(dict(self.payload), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidTask(f"payload is not JSON-serialisable: {exc}") from None
        if len(encoded.encode()) > MAX_PAYLOAD_BYTES:
            raise InvalidTask(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes")
        Priority.parse(self.priority)
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise InvalidTask("run_at must be timezone-aware")
        if self.key is not None and not (0 < len(self.key) <= MAX_KEY_LENGTH):
            raise InvalidTask(f"key must be 1-{MAX_KEY_LENGTH} characters")
        if not isinstance(self.key_mode, KeyMode):
            raise InvalidTask(f"key mode must be a KeyMode, got {self.key_mode!r}")

    @property
    def payload_json(self) -> str:
        """The payload as compact JSON text, as stored."""
        return json.dumps(dict(self.payload), separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, kw_only=True)
class Task:
    """A task as persisted."""

    id: int
    queue: str
    handler: str
    payload: dict[str, Any]
    priority: int
    run_at: datetime
    state: TaskState
    attempts: int
    retry: RetryPolicy
    last_error: str | None
    key: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    dead_at: datetime | None = None
    replayed_by: str | None = None
    replayed_at: datetime | None = None
    replay_count: int = 0

    @property
    def max_attempts(self) -> int:
        return self.retry.max_attempts


@dataclass(frozen=True, kw_only=True)
class EnqueueResult:
    task: Task
    outcome: EnqueueOutcome


@dataclass(frozen=True, kw_only=True)
class Lease:
    """The fence of one claim: the task and its ``attempts`` as that claim returned it. A
    result is written against the lease its attempt held, never against a later claim."""

    task_id: int
    attempt: int


class LateOutcome(enum.StrEnum):
    """What writing a success against its lease did (see ``TaskQueue.complete_fenced``)."""

    WRITTEN = "written"
    """The lease was still held: completed as usual."""
    TAKEN_FROM_DLQ = "taken_from_dlq"
    """Dead-lettered only because this lease lapsed: completed, out of the DLQ."""
    TAKEN_FROM_QUEUE = "taken_from_queue"
    """Returned to the queue when this lease lapsed and not claimed since: completed."""
    SUPERSEDED = "superseded"
    """Claimed again after this lease lapsed and running: completed; the re-run's own
    result is then ignored (a job run stops before starting its container)."""
    FINISHED = "finished"
    """Done or deleted already: finished by another attempt (or by this very write, when
    the answer to an earlier try of it was lost). Nothing changed."""
    IGNORED = "ignored"
    """Failed, dead-lettered for another reason, replayed or running under another claim
    of the same attempt since: nothing changed."""


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A failed attempt reported by a worker.

    ``retry_at`` is when to try again; ``None`` moves the task to the dead-letter queue.
    """

    task_id: int
    error: str
    retry_at: datetime | None
    attempt: int | None = None
    """The attempt number the failing attempt's claim returned: the failure then applies
    only while that very claim holds the lease (``None``: any claim of the worker's)."""


@dataclass(frozen=True, kw_only=True)
class TaskFilter:
    """Selects tasks for listing. ``search`` is a case-insensitive substring of the handler,
    key, last error or payload text."""

    state: TaskState | None = None
    queue: str | None = None
    handler: str | None = None
    search: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeadFilter:
    """Selects dead-letter entries. ``search`` as in :class:`TaskFilter`; ``dead_after``
    (inclusive) and ``dead_before`` (exclusive) bound when the task was dead-lettered."""

    queue: str | None = None
    handler: str | None = None
    search: str | None = None
    dead_before: datetime | None = None
    dead_after: datetime | None = None


T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Page(Generic[T]):
    """One page of a listing: ``items`` plus the ``total`` number matching the filter."""

    items: list[T]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True, kw_only=True)
class QueueInfo:
    """A queue's settings and counters.

    ``weight`` is the effective weight (the override, else the configured default);
    ``weight_overridden`` says whether an override is set. ``completed`` and ``failed``
    are cumulative: every completion, and every failed attempt (retried or not).
    """

    name: str
    paused: bool
    weight: int
    weight_overridden: bool
    concurrency_limit: int | None
    ready: int
    scheduled: int
    running: int
    dead: int
    completed: int
    failed: int


@dataclass(frozen=True, kw_only=True)
class DeadStats:
    total: int
    by_queue: dict[str, int]
    by_handler: dict[str, int]
    oldest_dead_at: datetime | None
    newest_dead_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """What a worker says about itself when it registers."""

    worker_id: str
    hostname: str
    pid: int
    concurrency: int
    queues: tuple[str, ...] | None = None
    version: str = ""


@dataclass(frozen=True, kw_only=True)
class WorkerRecord:
    info: WorkerInfo
    started_at: datetime
    heartbeat_at: datetime
    running: int


@dataclass(frozen=True, kw_only=True)
class Reschedule:
    """What an operator changes of a waiting task; ``None`` keeps the value. At least one
    field is set; ``max_attempts`` also becomes the task's retry policy's."""

    run_at: datetime | None = None
    priority: int | None = None
    attempts: int | None = None
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        fields = (self.run_at, self.priority, self.attempts, self.max_attempts)
        if all(value is None for value in fields):
            raise InvalidTask(
                "reschedule needs at least one of runAt, priority, attempts, maxAttempts"
            )
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise InvalidTask("runAt must be timezone-aware")
        for name, value, low, high in (
            ("priority", self.priority, -1000, 1000),
            ("attempts", self.attempts, 0, 1000),
            ("maxAttempts", self.max_attempts, 1, 1000),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
            ):
                raise InvalidTask(f"{name} must be an integer from {low} to {high}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TaskChange:
    """An operator's change to one task: the task before it and after it (``None`` when the
    change deleted it)."""

    before: Task
    after: Task | None
