"""The contract of durable schedules in the store.

Every backend (``store.schedules.sqlite``, ``store.schedules.postgres``) implements
:class:`ScheduleStore` and :class:`LeaderLock`; the contract suite in ``tests/contract``
(``test_schedules_*``) holds each to these docstrings.

Changes and firings
-------------------
A *change* is anything that alters what should fire: saving, deleting, pausing or resuming a
schedule, pausing or resuming all. Each change increments :attr:`SchedulesState.version` in
the transaction that makes it, and wakes :meth:`ScheduleStore.wait_for_change` waiters (on
PostgreSQL in every process, through NOTIFY; on SQLite in this store object only, so other
processes notice by polling :meth:`ScheduleStore.state`). Recording a firing is not a change:
it only updates the runtime state (``last_fire_time``, ``last_task_id``).

Errors
------
Every method may raise :class:`store.errors.StoreUnavailable` when the database cannot be
reached; nothing the call would have written is then acknowledged. Methods naming a schedule
that does not exist raise :class:`~store.schedules.errors.ScheduleNotFound` unless
documented otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from store.schedules.models import FiringRecord, LastTask, Page, Schedule, SchedulesState


class ScheduleStore(Protocol):
    """Named cron schedules, their runtime state and the pause-all switch."""

    async def upsert(self, schedule: Schedule) -> tuple[Schedule, bool]:
        """Save ``schedule`` under its name; return it as stored and whether it was new.

        A new schedule gets revision 1, ``created_at`` = ``updated_at`` = now and no runtime
        state. Saving over an existing one replaces every field the caller sets (``paused``
        included: pass the stored value to keep it), increments the revision and sets
        ``updated_at``; ``created_at`` and the runtime state are kept. Saving a paused
        schedule as not paused resumes it (``resumed_at`` = now). The store does not parse
        the spec or time zone: callers validate them first (``scheduler``).
        """
        ...

    async def get(self, name: str) -> Schedule | None:
        """The schedule called ``name``, or ``None``."""
        ...

    async def list_schedules(self, *, limit: int, offset: int) -> Page[Schedule]:
        """Schedules ordered by name, ``limit`` from ``offset``, with the total count."""
        ...

    async def list_all(self) -> list[Schedule]:
        """Every schedule, ordered by name (what a scheduler builds its timers from)."""
        ...

    async def delete(self, name: str) -> bool:
        """Delete the schedule called ``name``; return whether there was one."""
        ...

    async def set_paused(self, name: str, paused: bool) -> Schedule:
        """Pause or resume one schedule and return it. Resuming a paused schedule sets
        ``resumed_at`` to now; pausing or resuming again changes nothing but the version."""
        ...

    async def set_all_paused(self, paused: bool) -> SchedulesState:
        """Turn the pause-all switch on or off and return the new state. Turning it off
        sets ``all_resumed_at`` to now. Each schedule keeps its own ``paused`` flag."""
        ...

    async def state(self) -> SchedulesState:
        """The change version and the pause-all switch (one cheap read)."""
        ...

    async def record_firing(
        self, name: str, *, fire_time: datetime | None, task_id: int | None
    ) -> bool:
        """Record what the scheduler did with a tick or a manual run.

        ``fire_time`` (a tick fired or skipped) moves ``last_fire_time`` forwards, never
        back; ``task_id`` (a task was enqueued) replaces ``last_task_id``; ``None`` leaves
        either alone. Not a change (see *Changes and firings*). Returns ``False``, writing
        nothing, when the schedule no longer exists.
        """
        ...

    async def record_firings(self, records: Sequence[FiringRecord]) -> set[str]:
        """:meth:`record_firing` for many firings in one transaction (what the scheduler
        writes once per batch of ticks); returns the names of the schedules that exist (the
        others are ignored). Several records of one name combine: ``last_fire_time`` moves
        to the latest of their fire times (forwards only), ``last_task_id`` to the last
        non-``None`` task id in input order. Not a change.
        """
        ...

    async def last_tasks(self, names: Sequence[str]) -> dict[str, LastTask]:
        """The latest task (``last_task_id``) of each named schedule with its current state,
        in one read (what the overlap policy of a batch of ticks looks at). Schedules that do
        not exist, have no task yet, or whose task is gone from the queue are left out."""
        ...

    # The signature is the protocol's: a timeout parameter is the documented contract.
    async def wait_for_change(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return when a change may have happened (see *Changes and firings*) or after
        ``timeout`` seconds, whichever comes first. Spurious wake-ups are allowed, and
        changes made by other processes may only be seen by polling :meth:`state`."""
        ...

    def leader_lock(self, holder: str = "") -> LeaderLock:
        """A new, unheld claim on scheduler leadership over this store's database; while it
        is held, :meth:`leader` names ``holder`` (e.g. ``host:pid``) in every process."""
        ...

    async def leader(self) -> str | None:
        """Who leads the schedulers of this database now, in any process: the ``holder``
        of the lock held (``""`` when it gave none, or has not written it yet), or ``None``
        when no one holds leadership."""
        ...

    async def close(self) -> None:
        """Release what the store object holds (listener connections); the database it
        was built on stays open and is closed by its owner."""
        ...


class LeaderLock(Protocol):
    """Leadership of the scheduler over one database: at most one holder at a time.

    PostgreSQL: a session advisory lock held on a connection of its own, so a lost
    connection (or a killed process) releases it at once. SQLite: an exclusive ``flock`` on
    a file next to the database, released by the kernel when the process dies. Locks are
    per object: two ``LeaderLock`` objects in one process exclude each other too.
    """

    async def try_acquire(self) -> bool:
        """Try once, without waiting, to take leadership; ``True`` if this object holds it
        (also when it already did)."""
        ...

    async def still_held(self) -> bool:
        """Whether this object still holds leadership. Checks the PostgreSQL connection
        (a lost one means lost leadership: the lock is then let go locally too)."""
        ...

    async def release(self) -> None:
        """Give leadership up (idempotent; never raises for a connection already lost)."""
        ...
