"""The scheduler service: leader election, the clock of the active schedules, catch-up.

Every instance runs a :class:`SchedulerService`; only the one holding the store's
:class:`~store.schedules.protocol.LeaderLock` fires. The others retry the lock every
``leader_retry`` seconds (and keep serving reads through
:class:`~scheduler.manager.ScheduleManager`).

As leader it keeps a :class:`~scheduler.clock.TickClock` (APScheduler, in memory) with one
timer per active schedule, rebuilt from the store when it becomes leader and again whenever
the store's change version moves (NOTIFY or in-process wake-up, else polled every
``poll_interval`` seconds). Only schedules whose revision changed, or that became active, get
a new timer, which starts at their next tick after now: a resumed schedule never bursts.

Late and missed ticks
---------------------
- A tick reaching the leader more than the schedule's ``misfire_grace_seconds`` after its
  time is skipped (``misfire``). While the queue is unreachable a tick is retried until its
  grace runs out, then skipped (``store_unavailable``).
- On becoming leader, each active schedule's ticks between its anchor (see
  :mod:`scheduler.status`) and now were missed while nobody led. The latest of them fires
  (keyed by its own time, so a tick the previous leader did enqueue is not enqueued twice)
  when it lies within the grace, or, beyond it, when ``catch_up`` is ``latest`` (once, as a
  ``catch_up`` firing); with ``catch_up=none`` it is skipped. Older missed ticks are reported
  by one ``misfire`` skip event. At most one firing per schedule, however long the outage.

Leadership is checked every ``poll_interval`` seconds; on loss the clock stops at once. Ticks
still in flight finish: their keys make a double enqueue harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from scheduler.clock import TickClock
from scheduler.errors import SpecError
from scheduler.factories import FactoryRegistry, FiringKind
from scheduler.firing import Firer, SkipReason
from scheduler.spec import parse_spec, parse_timezone
from scheduler.status import is_active, missed_ticks
from store.errors import StoreError, StoreUnavailable
from store.events.protocol import EventStore
from store.queue.protocol import TaskQueue
from store.schedules.models import CatchUp, Schedule, SchedulesState
from store.schedules.protocol import LeaderLock, ScheduleStore

__all__ = ["SchedulerService"]

logger = logging.getLogger(__name__)

# Pause between attempts to enqueue a tick while the queue is unreachable (seconds).
_RETRY_PAUSE = 0.25


class SchedulerService:
    """Fires the persisted schedules when this instance leads; see the module docstring.

    Use as ``async with SchedulerService(...):`` or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        store: ScheduleStore,
        queue: TaskQueue,
        factories: FactoryRegistry,
        events: EventStore | None = None,
        instance: str = "scheduler",
        poll_interval: float = 1.0,
        leader_retry: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._instance = instance
        self._poll_interval = poll_interval
        self._leader_retry = leader_retry
        self._now = clock
        self._firer = Firer(
            store=store, queue=queue, factories=factories, events=events, clock=clock
        )
        self._task: asyncio.Task[None] | None = None
        self._lock: LeaderLock | None = None
        self._clock: TickClock | None = None
        self._known: dict[str, Schedule] = {}
        self._tick_locks: dict[str, asyncio.Lock] = {}
        self._synced_version: int | None = None
        self._leading = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> SchedulerService:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start competing for leadership (returns at once)."""
        if self._task is not None:
            raise RuntimeError("the scheduler service is already started")
        self._task = asyncio.create_task(self._run(), name=f"scheduler:{self._instance}")

    async def stop(self) -> None:
        """Stop firing, let ticks in flight finish, give leadership up."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logger.info("scheduler stopped", extra={"instance": self._instance})

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_until_leader(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Whether this instance leads within ``timeout`` seconds (for tests and health)."""
        try:
            await asyncio.wait_for(self._leading.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- the leadership loop --------------------------------------------------------------

    async def _run(self) -> None:
        lock = self._lock = self._store.leader_lock()
        try:
            while True:
                if not self.is_leader:
                    if await self._try_lead(lock):
                        continue
                    await asyncio.sleep(self._leader_retry)
                    continue
                await self._store.wait_for_change(self._poll_interval)
                if not await lock.still_held():
                    logger.warning("scheduler leadership lost", extra={"instance": self._instance})
                    await self._step_down()
                    continue
                try:
                    await self._sync()
                except StoreError as exc:
                    logger.warning("schedule sync failed", extra={"error": str(exc)})
        except Exception:
            logger.exception("scheduler loop failed", extra={"instance": self._instance})
            raise
        finally:
            # Shielded: a cancelled stop() must still stop the clock and free the lock.
            await asyncio.shield(self._shutdown(lock))

    async def _shutdown(self, lock: LeaderLock) -> None:
        await self._step_down()
        await lock.release()

    async def _try_lead(self, lock: LeaderLock) -> bool:
        try:
            if not await lock.try_acquire():
                return False
        except StoreError as exc:
            logger.warning("scheduler cannot reach the store", extra={"error": str(exc)})
            return False
        logger.info("scheduler became leader", extra={"instance": self._instance})
        self._clock = TickClock(self._on_ticks)
        self._clock.start()
        self._leading.set()
        try:
            now = self._now()
            state = await self._sync(force=True, now=now)
            await self._catch_up(state, now)
        except StoreError as exc:
            # Keep leading: the next sync retries, and timers already set keep ticking.
            self._synced_version = None
            logger.warning("scheduler start-up sync failed", extra={"error": str(exc)})
        return True

    async def _step_down(self) -> None:
        clock, self._clock = self._clock, None
        self._leading.clear()
        self._known.clear()
        self._synced_version = None
        if clock is not None:
            await clock.stop()

    # --- timers ---------------------------------------------------------------------------

    async def _sync(self, *, force: bool = False, now: datetime | None = None) -> SchedulesState:
        """Bring the clock's timers in line with the store (when its version moved)."""
        state = await self._store.state()
        clock = self._clock
        if clock is None or (not force and state.version == self._synced_version):
            return state
        after = now or self._now()
        wanted = {s.name: s for s in await self._store.list_all() if is_active(s, state)}
        for name in clock.names() - wanted.keys():
            clock.remove(name)
            self._known.pop(name, None)
        for name, schedule in wanted.items():
            known = self._known.get(name)
            self._known[name] = schedule
            if known is not None and known.revision == schedule.revision:
                continue
            try:
                clock.put(
                    name, parse_spec(schedule.spec), parse_timezone(schedule.timezone), after=after
                )
            except SpecError as exc:
                logger.error(
                    "stored schedule is invalid", extra={"schedule": name, "error": str(exc)}
                )
                clock.remove(name)
        self._synced_version = state.version
        logger.info(
            "schedules synced",
            extra={"instance": self._instance, "version": state.version, "active": len(wanted)},
        )
        return state

    async def _catch_up(self, state: SchedulesState, now: datetime) -> None:
        """Deal with ticks missed while nobody led (see *Late and missed ticks*)."""
        for schedule in list(self._known.values()):
            try:
                missed = missed_ticks(schedule, state, now)
            except SpecError:
                continue
            if missed is None:
                continue
            first, latest = missed
            grace = timedelta(seconds=schedule.misfire_grace_seconds)
            async with self._tick_lock(schedule.name):
                if first < latest:
                    await self._firer.skip(
                        schedule,
                        kind=FiringKind.CATCH_UP,
                        fire_time=first,
                        reason=SkipReason.MISFIRE,
                        detail="ticks missed while no scheduler was running",
                        record=False,
                        missedFrom=first.isoformat(),
                        missedUntil=latest.isoformat(),
                    )
                if now - latest <= grace:
                    await self._fire(schedule, latest, FiringKind.TICK)
                elif schedule.catch_up is CatchUp.LATEST:
                    await self._fire(schedule, latest, FiringKind.CATCH_UP)
                else:
                    await self._firer.skip(
                        schedule,
                        kind=FiringKind.CATCH_UP,
                        fire_time=latest,
                        reason=SkipReason.MISFIRE,
                        detail="missed while no scheduler was running (catch_up=none)",
                    )

    # --- ticks ----------------------------------------------------------------------------

    async def _on_ticks(self, name: str, fire_times: list[datetime]) -> None:
        async with self._tick_lock(name):
            for fire_time in fire_times:
                schedule = self._known.get(name)
                if schedule is None or not self.is_leader:
                    return
                late = self._now() - fire_time
                if late > timedelta(seconds=schedule.misfire_grace_seconds):
                    await self._firer.skip(
                        schedule,
                        kind=FiringKind.TICK,
                        fire_time=fire_time,
                        reason=SkipReason.MISFIRE,
                        detail=f"the tick reached the scheduler {late.total_seconds():.3f}s late",
                    )
                    continue
                await self._fire(schedule, fire_time, FiringKind.TICK)

    async def _fire(self, schedule: Schedule, fire_time: datetime, kind: FiringKind) -> None:
        deadline = fire_time + timedelta(seconds=schedule.misfire_grace_seconds)
        while True:
            try:
                await self._firer.fire(schedule, kind=kind, fire_time=fire_time)
                return
            except StoreUnavailable as exc:
                if (
                    kind is FiringKind.TICK
                    and self._now() + timedelta(seconds=_RETRY_PAUSE) < deadline
                ):
                    await asyncio.sleep(_RETRY_PAUSE)
                    continue
                await self._firer.skip(
                    schedule,
                    kind=kind,
                    fire_time=fire_time,
                    reason=SkipReason.STORE_UNAVAILABLE,
                    detail=str(exc),
                )
                return

    def _tick_lock(self, name: str) -> asyncio.Lock:
        # One firing per schedule at a time, so the overlap policy sees the previous task.
        lock = self._tick_locks.get(name)
        if lock is None:
            lock = self._tick_locks[name] = asyncio.Lock()
        return lock
