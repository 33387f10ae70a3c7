"""Request and response bodies (camelCase JSON, seed 003 shapes) and their conversion from
the store's value objects. Pydantic lives only here, at the edge (DESIGN §2)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from admin.run_errors import shown_error
from jobrunner.job_run_task import HANDLER as JOB_RUN_HANDLER
from store.queue.models import DeadStats, QueueInfo, Task, WorkerRecord


class Schema(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown request fields are refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def epoch_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


MAX_INT: Final = 2**53 - 1
"""The largest page offset or numeric id a request may name: far beyond anything a store
holds, inside SQLite's and PostgreSQL's BIGINT and a JSON number's exact range (a larger
one would overflow the store's parameter and fail the request with a 500)."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with NUL characters and unpaired surrogates escaped (``\\u0000``), as an
    audit target taken from a request body must be: no event store can hold them."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


MAX_SECONDS: Final = 100 * 366 * 24 * 3600
"""The longest duration in seconds a request may name (a century; ``timedelta`` overflows
far above)."""


# --- requests ---------------------------------------------------------------------------

Weight = Annotated[int, Field(ge=1, le=1000, strict=True)]


class WeightRequest(Schema):
    weight: Weight


class PausedRequest(Schema):
    paused: Annotated[bool, Field(strict=True)]


class ReplayRequest(Schema):
    limit: Annotated[int | None, Field(ge=1, strict=True)] = None
    """How many to replay; default 100 (or the cap, when that is lower)."""
    queue: str | None = None
    handler: str | None = None
    query: str | None = None
    dry_run: Annotated[bool, Field(strict=True)] = False
    """Only count, by queue, what would be replayed (answers a DeadPreview)."""


TaskId = Annotated[str | int, Field(union_mode="left_to_right")]


class ReplayIdsRequest(Schema):
    ids: Annotated[list[TaskId], Field(min_length=1)]
    dry_run: Annotated[bool, Field(strict=True)] = False


class PurgeRequest(Schema):
    older_than_seconds: Annotated[int, Field(ge=0, le=MAX_SECONDS, strict=True)] = 0
    """Purge entries dead for at least this long (0: every dead entry)."""
    dry_run: Annotated[bool, Field(strict=True)] = False


# --- responses --------------------------------------------------------------------------


class HealthBody(Schema):
    status: str
    version: str
    commit: str
    """The source revision this build was made from (``""`` when unknown)."""
    build_time: str
    """When this build was made or installed, RFC 3339 (``""`` when unknown)."""
    python_version: str
    go_version: str
    """Seed 003's runtime field: here the Python runtime, e.g. ``python 3.11.7``."""
    dequeue_paused: bool


class QueueBody(Schema):
    name: str
    paused: bool
    weight: int
    weight_overridden: bool
    concurrency_limit: int | None
    ready: int
    scheduled: int
    running: int
    processing: int
    """Seed 003's name for ``running``."""
    dead: int
    completed: int
    failed: int

    @classmethod
    def of(cls, info: QueueInfo) -> QueueBody:
        return cls(
            name=info.name,
            paused=info.paused,
            weight=info.weight,
            weight_overridden=info.weight_overridden,
            concurrency_limit=info.concurrency_limit,
            ready=info.ready,
            scheduled=info.scheduled,
            running=info.running,
            processing=info.running,
            dead=info.dead,
            completed=info.completed,
            failed=info.failed,
        )


class QueueList(Schema):
    queues: list[QueueBody]
    total: int


class QueueOne(Schema):
    queue: QueueBody


class DequeueState(Schema):
    paused: bool


class TaskBody(Schema):
    """A task (and a DLQ entry, which is a dead task). ``id`` is a string, as seed 003's
    clients send and compare ids."""

    id: str
    queue: str
    handler: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    last_error: str | None
    key: str | None
    payload_size: int
    run_at: str | None
    run_at_ms: int | None
    created_at: str | None
    created_at_ms: int | None
    updated_at: str | None
    updated_at_ms: int | None
    dead_at: str | None
    dead_at_ms: int | None
    lease_owner: str | None
    replay_count: int
    replayed_by: str | None
    replayed_at: str | None
    replayed_at_ms: int | None

    @classmethod
    def of(cls, task: Task) -> TaskBody:
        return cls(**_task_fields(task))


class TaskDetail(TaskBody):
    payload: dict[str, Any]

    @classmethod
    def of(cls, task: Task) -> TaskDetail:
        return cls(**_task_fields(task), payload=task.payload)


def _task_fields(task: Task) -> dict[str, Any]:
    return {
        "id": str(task.id),
        "queue": task.queue,
        "handler": task.handler,
        "state": task.state.value,
        "priority": task.priority,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "last_error": _shown_last_error(task),
        "key": task.key,
        "payload_size": len(json.dumps(task.payload, separators=(",", ":")).encode()),
        "run_at": rfc3339(task.run_at),
        "run_at_ms": epoch_ms(task.run_at),
        "created_at": rfc3339(task.created_at),
        "created_at_ms": epoch_ms(task.created_at),
        "updated_at": rfc3339(task.updated_at),
        "updated_at_ms": epoch_ms(task.updated_at),
        "dead_at": rfc3339(task.dead_at),
        "dead_at_ms": epoch_ms(task.dead_at),
        "lease_owner": task.lease_owner,
        "replay_count": task.replay_count,
        "replayed_by": task.replayed_by,
        "replayed_at": rfc3339(task.replayed_at),
        "replayed_at_ms": epoch_ms(task.replayed_at),
    }


def _shown_last_error(task: Task) -> str | None:
    """A job run task's last error is its run's error, shown as run errors are (without host
    paths and addresses: :mod:`admin.run_errors`); other handlers' errors are their own."""
    if task.handler == JOB_RUN_HANDLER:
        return shown_error(task.last_error)
    return task.last_error


class DeadEntry(TaskBody):
    """A dead-letter entry: the dead task plus seed 003's fields, never null: ``ageMs``
    (how long it has been dead), ``failedAtMs`` (when it was dead-lettered), ``lastError``
    (``""`` when none was recorded) and ``metadata`` (string to string)."""

    last_error: str  # seed 003 clients call .toString() on it: never null here
    age_ms: int
    failed_at_ms: int
    metadata: dict[str, str]

    @classmethod
    def of(cls, task: Task) -> DeadEntry:
        return cls(**_dead_fields(task))


class DeadEntryDetail(DeadEntry):
    payload: dict[str, Any]

    @classmethod
    def of(cls, task: Task) -> DeadEntryDetail:
        return cls(**_dead_fields(task), payload=task.payload)


def _dead_fields(task: Task) -> dict[str, Any]:
    fields = _task_fields(task)
    dead_at = task.dead_at or task.updated_at
    failed_at_ms = epoch_ms(dead_at) if dead_at is not None else -1
    age_ms = (
        max(0, int((datetime.now(UTC) - dead_at).total_seconds() * 1000))
        if dead_at is not None
        else -1
    )
    metadata = {
        "state": task.state.value,
        "priority": str(task.priority),
        "maxAttempts": str(task.max_attempts),
        "replayCount": str(task.replay_count),
    }
    if task.key is not None:
        metadata["key"] = task.key
    if task.replayed_by is not None:
        metadata["replayedBy"] = task.replayed_by
    return {
        **fields,
        "last_error": fields["last_error"] or "",
        "age_ms": age_ms,
        "failed_at_ms": failed_at_ms,
        "metadata": metadata,
    }


class DeadList(Schema):
    entries: list[DeadEntry]
    total: int
    limit: int
    offset: int


class DeadOne(Schema):
    entry: DeadEntryDetail


class ReplayResult(Schema):
    replayed: int
    moved: int
    """Seed 003's name for ``replayed``."""
    ids: list[str]


class DeleteResult(Schema):
    deleted: int


class PurgeResult(Schema):
    purged: int


class DeadStatsBody(Schema):
    total: int
    by_queue: dict[str, int]
    by_handler: dict[str, int]
    oldest_dead_at: str | None
    oldest_dead_at_ms: int | None
    newest_dead_at: str | None
    newest_dead_at_ms: int | None

    @classmethod
    def of(cls, stats: DeadStats) -> DeadStatsBody:
        return cls(
            total=stats.total,
            by_queue=stats.by_queue,
            by_handler=stats.by_handler,
            oldest_dead_at=rfc3339(stats.oldest_dead_at),
            oldest_dead_at_ms=epoch_ms(stats.oldest_dead_at),
            newest_dead_at=rfc3339(stats.newest_dead_at),
            newest_dead_at_ms=epoch_ms(stats.newest_dead_at),
        )


class DeadStatsOne(Schema):
    stats: DeadStatsBody


class TaskList(Schema):
    tasks: list[TaskBody]
    total: int
    limit: int
    offset: int


class WorkerBody(Schema):
    worker_id: str
    hostname: str
    pid: int
    concurrency: int
    queues: list[str] | None
    version: str
    running: int
    started_at: str | None
    started_at_ms: int | None
    heartbeat_at: str | None
    heartbeat_at_ms: int | None

    @classmethod
    def of(cls, record: WorkerRecord) -> WorkerBody:
        info = record.info
        return cls(
            worker_id=info.worker_id,
            hostname=info.hostname,
            pid=info.pid,
            concurrency=info.concurrency,
            queues=None if info.queues is None else list(info.queues),
            version=info.version,
            running=record.running,
            started_at=rfc3339(record.started_at),
            started_at_ms=epoch_ms(record.started_at),
            heartbeat_at=rfc3339(record.heartbeat_at),
            heartbeat_at_ms=epoch_ms(record.heartbeat_at),
        )


class WorkerList(Schema):
    workers: list[WorkerBody]
    total: int


class ErrorDetail(Schema):
    code: str
    message: str


class ErrorBody(Schema):
    """The envelope of every error response."""

    request_id: str
    error: ErrorDetail
