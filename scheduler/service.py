"""The scheduler service: leader election and the clock of the active schedules.

Every instance runs a :class:`SchedulerService`; only the one holding the store's
:class:`~store.schedules.protocol.LeaderLock` fires. The others retry the lock every
``leader_retry`` seconds (and keep serving reads through
:class:`~scheduler.manager.ScheduleManager`).

As leader it keeps a :class:`~scheduler.clock.TickClock` (APScheduler, in memory) with one
timer per active schedule, rebuilt from the store when it becomes leader and again whenever
the store's change version moves (NOTIFY or in-process wake-up, else polled every
``poll_interval`` seconds). Only schedules whose revision changed, or that became active, get
a new timer, which starts at their next tick after now: a resumed schedule never bursts.
The ticks are fired in batches (:mod:`scheduler.batches`: late ones are skipped there), and
the ticks missed while nobody led are dealt with on becoming leader
(:mod:`scheduler.catch_up`). Firings not enqueued within their grace are reported as missed
(:mod:`scheduler.missed`: a ``ScheduleMissed`` event each, and ``on_missed``).

Leadership is checked every ``poll_interval`` seconds; on loss the clock stops at once and
ticks not yet flushed are dropped (the next leader's catch-up sees them). Batches already in
flight finish: their keys make a double enqueue harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from scheduler.batches import TickBatcher
from scheduler.catch_up import plan_catch_up
from scheduler.clock import TickClock
from scheduler.errors import SpecError
from scheduler.factories import FactoryRegistry
from scheduler.firing import Firer
from scheduler.missed import MissedHandler, MissedReporter, missed_of_late_firings
from scheduler.spec import parse_spec, parse_timezone
from scheduler.status import is_active
from store.background import TaskOwner
from store.errors import StoreError
from store.events.protocol import EventStore
from store.queue.protocol import TaskQueue
from store.schedules.models import Schedule, SchedulesState
from store.schedules.protocol import LeaderLock, ScheduleStore

__all__ = ["SchedulerService"]

logger = logging.getLogger(__name__)


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
        batch_window: float = 0.005,
        batch_size: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_missed: MissedHandler | None = None,
    ) -> None:
        self._store = store
        self._instance = instance
        self._poll_interval = poll_interval
        self._leader_retry = leader_retry
        self._now = clock
        self._missed = MissedReporter(events, on_missed, clock)
        self._firer = Firer(
            store=store,
            queue=queue,
            factories=factories,
            events=events,
            clock=clock,
            skip_listener=self._missed,
        )
        self._tasks: TaskOwner | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock: LeaderLock | None = None
        self._clock: TickClock | None = None
        self._known: dict[str, Schedule] = {}
        self._batch_window = batch_window
        self._batch_size = batch_size
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
        # One owner per start: the leadership loop and the tick batches it starts.
        tasks = self._tasks = TaskOwner(f"scheduler:{self._instance}")
        self._task = tasks.spawn(self._run(tasks), name=f"scheduler:{self._instance}")

    async def stop(self) -> None:
        """Stop firing, let ticks in flight finish, give leadership up."""
        task, self._task = self._task, None
        tasks, self._tasks = self._tasks, None
        if task is None or tasks is None:
            return
        task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            # Batches that outlived the loop's wait for them were cancelled by it.
            await tasks.close()
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

    async def _run(self, tasks: TaskOwner) -> None:
        lock = self._lock = self._store.leader_lock(self._instance)
        batches = TickBatcher(
            firer=self._firer,
            tasks=tasks,
            schedules=self._known.get,
            leading=self._leading,
            instance=self._instance,
            batch_window=self._batch_window,
            batch_size=self._batch_size,
            clock=self._now,
        )
        try:
            while True:
                if not self.is_leader:
                    if await self._try_lead(lock, batches):
                        continue
                    await asyncio.sleep(self._leader_retry)
                    continue
                await self._store.wait_for_change(self._poll_interval)
                if not await lock.still_held():
                    logger.warning("scheduler leadership lost", extra={"instance": self._instance})
                    await self._step_down(batches)
                    continue
                try:
                    await self._sync()
                except StoreError as exc:
                    logger.warning("schedule sync failed", extra={"error": str(exc)})
        finally:
            # Shielded: a cancelled stop() must still stop the clock and free the lock.
            await asyncio.shield(self._shutdown(lock, batches))

    async def _shutdown(self, lock: LeaderLock, batches: TickBatcher) -> None:
        await self._step_down(batches)
        await lock.release()

    async def _try_lead(self, lock: LeaderLock, batches: TickBatcher) -> bool:
        try:
            if not await lock.try_acquire():
                return False
        except StoreError as exc:
            logger.warning("scheduler cannot reach the store", extra={"error": str(exc)})
            return False
        logger.info("scheduler became leader", extra={"instance": self._instance})
        self._clock = TickClock(batches.add_ticks)
        self._clock.start()
        self._leading.set()
        try:
            now = self._now()
            state = await self._sync(force=True, now=now)
            await self._catch_up(state, now, batches)
        except StoreError as exc:
            # Keep leading: the next sync retries, and timers already set keep ticking.
            self._synced_version = None
            logger.warning("scheduler start-up sync failed", extra={"error": str(exc)})
        return True

    async def _step_down(self, batches: TickBatcher) -> None:
        clock, self._clock = self._clock, None
        self._leading.clear()
        self._known.clear()
        self._synced_version = None
        if clock is not None:
            await clock.stop()
        await batches.drop()

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

    async def _catch_up(self, state: SchedulesState, now: datetime, batches: TickBatcher) -> None:
        """Deal with ticks missed while nobody led (see :mod:`scheduler.catch_up`): the
        skips in one batch, the firings through the tick batches (waited for)."""
        plan = plan_catch_up(list(self._known.values()), state, now)
        if plan.skips:
            await self._firer.skip_many(plan.skips)
        await batches.fire_and_wait(plan.firings)
        await self._missed.report(missed_of_late_firings(plan.firings))
