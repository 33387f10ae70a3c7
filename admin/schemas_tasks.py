"""Bodies of the task actions (``/tasks/...``), the maintenance operations
(``/maintenance/...``) and the schedule preview (``/schedules/preview``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator

from admin.schemas import MAX_SECONDS, Schema, TaskBody, WorkerBody
from store.queue.models import MAX_KEY_LENGTH, QUEUE_NAME
from store.queue.operator import MAX_REASON


def _usable_instant(value: datetime | None) -> datetime | None:
    """An instant a store and the schedule arithmetic can hold: 1970 to 9998 in UTC."""
    if value is None:
        return None
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be between 1970 and 9998 (UTC)") from None
    if not 1970 <= utc.year <= 9998:
        raise ValueError("must be between 1970 and 9998 (UTC)")
    return value


# --- task actions -------------------------------------------------------------------------


class TaskFailRequest(Schema):
    reason: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_REASON,
            description="Why the task is failed: recorded as its lastError (required, not blank).",
        ),
    ]

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class TaskRescheduleRequest(Schema):
    """Any of the four fields (at least one); the others keep their value."""

    run_at: AwareDatetime | None = Field(
        default=None, description="When to run, RFC 3339 with an offset (e.g. `...Z`)."
    )
    priority: Annotated[int | None, Field(ge=-1000, le=1000, strict=True)] = Field(
        default=None, description="-1000 to 1000; lower runs first."
    )
    attempts: Annotated[int | None, Field(ge=0, le=1000, strict=True)] = Field(
        default=None, description="0 to 1000: attempts used so far; must stay below maxAttempts."
    )
    max_attempts: Annotated[int | None, Field(ge=1, le=1000, strict=True)] = Field(
        default=None, description="1 to 1000: starts before the task is dead-lettered."
    )

    _run_at = field_validator("run_at")(_usable_instant)


class TaskRemoveRequest(Schema):
    key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            description="The idempotency key the task was enqueued with (keys are unique "
            "across queues).",
        ),
    ]
    queue: Annotated[str | None, Field(pattern=QUEUE_NAME.pattern)] = Field(
        default=None, description="When given, the task must be in this queue (else 404)."
    )


class TaskActionResult(Schema):
    """What an operator's action did to one task."""

    action: Literal["complete", "fail", "run-now", "reschedule", "remove"]
    task_id: str
    previous_state: str = Field(description="ready, scheduled, dead or done.")
    state: str = Field(
        description="The task's state now: `done` (also when a keyless task was deleted on "
        "completion), `dead`, `ready`, `scheduled`, or `removed`."
    )
    task: TaskBody | None = Field(description="The task now; null when it was deleted.")


# --- dead-letter previews -----------------------------------------------------------------


class DeadPreview(Schema):
    """What a replay or purge sent with ``dryRun: true`` would take; nothing changed."""

    dry_run: Literal[True] = True
    action: Literal["replay", "purge"]
    total: int = Field(description="How many dead tasks it would replay or purge.")
    by_queue: dict[str, int] = Field(description="The same, by queue.")


# --- maintenance --------------------------------------------------------------------------

CleanupTask = Literal["expired-keys", "empty-queues"]


class CleanupRequest(Schema):
    tasks: Annotated[list[CleanupTask] | None, Field(min_length=1)] = Field(
        default=None,
        description="Which cleanups to run (default: all). `expired-keys` deletes done tasks "
        "whose key retention is over; `empty-queues` forgets queues with no task and no setting.",
    )


class CleanupResult(Schema):
    tasks: list[str] = Field(description="The cleanups that ran.")
    expired_keys_deleted: int
    queues_removed: list[str]


WorkerId = Annotated[str, Field(min_length=1, max_length=256)]


class ForceUnlockRequest(Schema):
    worker_ids: Annotated[list[WorkerId], Field(min_length=1, max_length=1000)] = Field(
        description="Workers whose leased tasks go back to the queue."
    )


class ForceUnlockResult(Schema):
    released: int = Field(description="How many tasks were released.")
    by_worker: dict[str, list[str]] = Field(
        description="The ids released, by worker (workers that held nothing are left out)."
    )


class SweepRequest(Schema):
    dry_run: Annotated[bool, Field(strict=True)] = Field(
        default=False, description="Only say what would be swept."
    )
    older_than_seconds: Annotated[int | None, Field(ge=1, le=MAX_SECONDS, strict=True)] = Field(
        default=None,
        description="A worker is stale when its last heartbeat is older than this (default: "
        "WORKER_STALE_WORKER_SECONDS of the service).",
    )


class SweepResult(Schema):
    dry_run: bool
    older_than_seconds: int
    workers: list[WorkerBody] = Field(
        description="The stale workers (as they were), swept unless dryRun."
    )
    tasks: int = Field(description="Tasks those workers held (made waiting again unless dryRun).")


# --- schedule preview -----------------------------------------------------------------------


class SchedulePreviewRequest(Schema):
    spec: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="A schedule spec: crontab(5), optionally with seconds, an @-macro or @every."
    )
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default="UTC", description="IANA time zone the spec is read in."
    )
    count: Annotated[int, Field(ge=1, le=50, strict=True)] = Field(
        default=5, description="How many fire times."
    )
    after: AwareDatetime | None = Field(
        default=None, description="Start after this instant (default: now)."
    )

    _after = field_validator("after")(_usable_instant)


class FireTime(Schema):
    at: str = Field(description="In the schedule's time zone, RFC 3339 with its offset.")
    at_utc: str
    at_ms: int


class SchedulePreviewResult(Schema):
    spec: str
    timezone: str
    fire_times: list[FireTime] = Field(
        description="The next fire times (fewer than asked when the spec fires no more)."
    )


class TaskOne(Schema):
    """One task (without its payload): its state, attempts and last error."""

    task: TaskBody
