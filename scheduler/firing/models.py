"""What a firing is made of and what becomes of it: :class:`Tick` (a firing to make),
:class:`Skip` (one not made, with its :class:`SkipReason`) and :class:`FiringResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.factories import FiringKind
from store.queue.models import Task
from store.schedules.models import Schedule

SCHEDULE_SKIPPED = "ScheduleSkipped"
"""The event of a skipped firing (the event store accepts any past-tense name)."""


class SkipReason:
    PAUSED = "paused"
    OVERLAP = "overlap"
    MISFIRE = "misfire"
    UNKNOWN_FACTORY = "unknown_factory"
    FACTORY_FAILED = "factory_failed"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True, kw_only=True)
class FiringResult:
    """What became of one firing: a task (``fired``) or a skip with its reason.

    ``deduplicated`` means the key was enqueued before (by another instance): ``task`` is
    that earlier task and no event was written.
    """

    schedule: str
    kind: FiringKind
    fire_time: datetime
    task: Task | None = None
    skipped: str | None = None
    detail: str = ""
    deduplicated: bool = False

    @property
    def fired(self) -> bool:
        return self.task is not None


@dataclass(frozen=True, kw_only=True)
class Tick:
    """A firing to make: ``schedule`` for ``fire_time`` (a tick, or the request time of a
    manual run, which then passes its own ``key``)."""

    schedule: Schedule
    kind: FiringKind
    fire_time: datetime
    key: str | None = None


@dataclass(frozen=True, kw_only=True)
class Skip:
    """A firing not made, with its reason; ``record`` marks a tick as handled (manual runs
    never are). ``data`` goes into the ``ScheduleSkipped`` event."""

    schedule: Schedule
    kind: FiringKind
    fire_time: datetime
    reason: str
    detail: str
    record: bool = True
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, tick: Tick, reason: str, detail: str, **data: Any) -> Skip:
        """The skip of ``tick`` for ``reason``."""
        return cls(
            schedule=tick.schedule,
            kind=tick.kind,
            fire_time=tick.fire_time,
            reason=reason,
            detail=detail,
            data=data,
        )
