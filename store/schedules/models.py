"""Value objects of the schedule store: schedules, their runtime state, the global switch.

Everything here is frozen and keyword-only; timestamps are timezone-aware (UTC). A
:class:`Schedule` is validated against the store's rules when built (see
:class:`~store.schedules.errors.InvalidSchedule`); whether its spec and time zone are valid
cron is checked by ``scheduler`` before it is saved.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from store.queue.models import Page, TaskState
from store.schedules.errors import InvalidSchedule

__all__ = [
    "DEFAULT_MISFIRE_GRACE_SECONDS",
    "SCHEDULE_NAME",
    "CatchUp",
    "OverlapPolicy",
    "Page",
    "Schedule",
    "SchedulesState",
]

SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Schedule and factory names. No ``:``, so ``schedule:<name>:<fire time>`` keys parse back."""
MAX_SPEC_LENGTH = 256
MAX_TIMEZONE_LENGTH = 64
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_MISFIRE_GRACE_SECONDS = 7 * 24 * 3600
DEFAULT_MISFIRE_GRACE_SECONDS = 5
"""Long enough that a leader fail-over (about a second) does not lose the tick in between."""


class OverlapPolicy(enum.StrEnum):
    """What a tick does while the schedule's previous task is still queued or running.

    - ``allow``: fire anyway.
    - ``forbid``: skip the tick (a ``ScheduleSkipped`` event with reason ``overlap``).
    - ``replace``: cancel the previous task, then fire.
    """

    ALLOW = "allow"
    FORBID = "forbid"
    REPLACE = "replace"


class CatchUp(enum.StrEnum):
    """What happens to ticks missed while no scheduler ran (beyond the misfire grace).

    - ``none``: they are skipped (one ``ScheduleSkipped`` event, reason ``misfire``).
    - ``latest``: the most recent one fires, once.
    """

    NONE = "none"
    LATEST = "latest"


def _check_name(value: object, label: str) -> str:
    if not isinstance(value, str) or not SCHEDULE_NAME.fullmatch(value):
        raise InvalidSchedule(
            label, f"{value!r} is invalid: use 1-128 letters, digits, '.', '_' or '-'"
        )
    return value


def _check_text(value: object, label: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidSchedule(label, f"must be 1-{limit} characters, got {value!r}")
    # PostgreSQL text cannot hold NUL; refuse it on both backends alike.
    if "\0" in value:
        raise InvalidSchedule(label, "must not contain NUL characters")
    return value


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A named cron schedule, as saved by the caller and then kept by the store.

    The caller sets the fields up to ``catch_up``; ``factory`` defaults to ``name``. The
    store fills in ``revision`` (1 when created, +1 per save), ``created_at``,
    ``updated_at`` and the runtime state it keeps for the scheduler:

    - ``resumed_at``: when the schedule was last resumed (``None`` if never paused);
      ticks before it are never caught up.
    - ``last_fire_time``: the latest tick the scheduler handled (fired *or* skipped); a
      manual run is not a tick and leaves it alone.
    - ``last_task_id``: the queue task of the latest firing (a tick or a manual run), which
      the overlap policy looks at.

    Values given for the store's fields when saving are ignored.
    """

    name: str
    spec: str
    timezone: str = "UTC"
    factory: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    paused: bool = False
    durable: bool = True
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW
    misfire_grace_seconds: int = DEFAULT_MISFIRE_GRACE_SECONDS
    catch_up: CatchUp = CatchUp.NONE
    revision: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    resumed_at: datetime | None = None
    last_fire_time: datetime | None = None
    last_task_id: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        if not self.factory:
            object.__setattr__(self, "factory", self.name)
        _check_name(self.factory, "factory")
        _check_text(self.spec, "spec", MAX_SPEC_LENGTH)
        _check_text(self.timezone, "timezone", MAX_TIMEZONE_LENGTH)
        for label, enum_type in (("overlap_policy", OverlapPolicy), ("catch_up", CatchUp)):
            try:
                object.__setattr__(self, label, enum_type(getattr(self, label)))
            except ValueError:
                names = ", ".join(member.value for member in enum_type)
                raise InvalidSchedule(
                    label, f"must be one of {names}, got {getattr(self, label)!r}"
                ) from None
        grace = self.misfire_grace_seconds
        if (
            isinstance(grace, bool)
            or not isinstance(grace, int)
            or not 0 <= grace <= MAX_MISFIRE_GRACE_SECONDS
        ):
            raise InvalidSchedule(
                "misfire_grace_seconds",
                f"must be an integer from 0 to {MAX_MISFIRE_GRACE_SECONDS}, got {grace!r}",
            )
        for label in ("paused", "durable"):
            if not isinstance(getattr(self, label), bool):
                raise InvalidSchedule(label, "must be true or false")
        if not isinstance(self.payload, Mapping):
            raise InvalidSchedule("payload", "must be a JSON object")
        try:
            encoded = json.dumps(dict(self.payload), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidSchedule("payload", f"is not JSON-serialisable: {exc}") from None
        if len(encoded.encode()) > MAX_PAYLOAD_BYTES:
            raise InvalidSchedule("payload", f"is larger than {MAX_PAYLOAD_BYTES} bytes")
        if "\\u0000" in encoded:
            raise InvalidSchedule("payload", "must not contain NUL characters")

    @property
    def payload_json(self) -> str:
        """The payload as compact JSON text, as stored."""
        return json.dumps(
            dict(self.payload), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )


@dataclass(frozen=True, kw_only=True)
class SchedulesState:
    """What every scheduler instance watches: ``version`` grows with each change to any
    schedule (not with firings), ``all_paused`` is the pause-all switch and
    ``all_resumed_at`` when it was last turned off (``None`` if never)."""

    version: int
    all_paused: bool
    all_resumed_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class FiringRecord:
    """One entry of :meth:`~store.schedules.protocol.ScheduleStore.record_firings`: what the
    scheduler did with a tick (``fire_time``) or a manual run (``fire_time=None``), and the
    task it enqueued (``task_id``, ``None`` for a skip)."""

    name: str
    fire_time: datetime | None = None
    task_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class LastTask:
    """The queue task of a schedule's latest firing and its state (``ready`` and
    ``scheduled`` told apart by ``run_at`` against the database clock)."""

    schedule: str
    task_id: int
    state: TaskState
