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

Batches
-------
The clock hands every tick over at once (all ticks due at one instant arrive in one
APScheduler wake-up); ticks are collected and fired in batches
(:meth:`~scheduler.firing.Firer.fire_many`: one ``enqueue_many``, one ``record_firings``,
one ``append_many`` of events): a batch is flushed when its oldest tick has waited
``batch_window`` seconds (5 ms) or ``batch_size`` (1,000) ticks are pending. Up to
``_MAX_FLUSHES`` batches are in flight at once, but a schedule is in at most one of them
and has at most one tick per batch, so its ticks are fired one after the other and the
overlap policy sees the previous firing's task (the per-schedule order of the per-tick
design). Ticks waiting for a free flush keep accumulating, so under overload batches grow
rather than multiply.

Late and missed ticks
---------------------
- A tick whose batch is flushed (i.e. about to be enqueued) more than the schedule's
  ``misfire_grace_seconds`` after its time is skipped (``misfire``); the skips of a batch
  are written together (one ``record_firings``, one ``append_many``), so an overloaded
  scheduler sheds late ticks cheaply and catches up instead of collapsing. While the queue
  is unreachable a batch is retried until each tick's grace runs out, then those ticks are
  skipped (``store_unavailable``).
- On becoming leader, each active schedule's ticks between its anchor (see
  :mod:`scheduler.status`) and now were missed while nobody led. The latest of them fires
  (keyed by its own time, so a tick the previous leader did enqueue is not enqueued twice)
  when it lies within the grace, or, beyond it, when ``catch_up`` is ``latest`` (once, as a
  ``catch_up`` firing); with ``catch_up=none`` it is skipped. Older missed ticks are reported
  by one ``misfire`` skip event. At most one firing per schedule, however long the outage.

Leadership is checked every ``poll_interval`` seconds; on loss the clock stops at once and
ticks not yet flushed are dropped (the next leader's catch-up sees them). Batches already in
flight finish: their keys make a double enqueue harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scheduler.clock import TickClock
from scheduler.errors import SpecError
from scheduler.factories import FactoryRegistry, FiringKind
from scheduler.firing import Firer, Skip, SkipReason, Tick
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
# Batches in flight at once (each holds a pooled connection for its enqueue_many).
_MAX_FLUSHES = 4
# The most ticks one batch takes (the rest wait for the next).
_MAX_BATCH = 5000
# How long stop() waits for batches in flight (seconds).
_STOP_TIMEOUT = 10.0


@dataclass(eq=False)
class _Pending:
    """A tick waiting for its batch; ``done`` (catch-up) is resolved once it was handled."""

    name: str
    fire_time: datetime
    kind: FiringKind
    done: asyncio.Future[None] | None = None

    def resolve(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


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
        self._batch_window = batch_window
        self._batch_size = batch_size
        self._pending: list[_Pending] = []
        self._in_flight: set[str] = set()
        self._flushes: set[asyncio.Task[None]] = set()
        self._flush_timer: asyncio.TimerHandle | None = None
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
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        pending, self._pending = self._pending, []
        for item in pending:
            item.resolve()
        flushes = set(self._flushes)
        if flushes:
            _done, late = await asyncio.wait(flushes, timeout=_STOP_TIMEOUT)
            for task in late:
                task.cancel()

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
        """Deal with ticks missed while nobody led (see *Late and missed ticks*): the skips
        in one batch, the firings through the tick batches (waited for)."""
        skips: list[Skip] = []
        firings: list[_Pending] = []
        loop = asyncio.get_running_loop()
        for schedule in list(self._known.values()):
            try:
                missed = missed_ticks(schedule, state, now)
            except SpecError:
                continue
            if missed is None:
                continue
            first, latest = missed
            grace = timedelta(seconds=schedule.misfire_grace_seconds)
            if first < latest:
                skips.append(
                    Skip(
                        schedule=schedule,
                        kind=FiringKind.CATCH_UP,
                        fire_time=first,
                        reason=SkipReason.MISFIRE,
                        detail="ticks missed while no scheduler was running",
                        record=False,
                        data={"missedFrom": first.isoformat(), "missedUntil": latest.isoformat()},
                    )
                )
            if now - latest <= grace:
                kind = FiringKind.TICK
            elif schedule.catch_up is CatchUp.LATEST:
                kind = FiringKind.CATCH_UP
            else:
                skips.append(
                    Skip(
                        schedule=schedule,
                        kind=FiringKind.CATCH_UP,
                        fire_time=latest,
                        reason=SkipReason.MISFIRE,
                        detail="missed while no scheduler was running (catch_up=none)",
                    )
                )
                continue
            firings.append(_Pending(schedule.name, latest, kind, loop.create_future()))
        if skips:
            await self._firer.skip_many(skips)
        for item in firings:
            self._add(item)
        waits = [item.done for item in firings if item.done is not None]
        if waits:
            await asyncio.gather(*waits)

    # --- ticks ----------------------------------------------------------------------------

    def _on_ticks(self, name: str, fire_times: list[datetime]) -> None:
        """The clock's callback: queue the ticks for their batch."""
        for fire_time in fire_times:
            self._add(_Pending(name, fire_time, FiringKind.TICK))

    def _add(self, item: _Pending) -> None:
        if not self.is_leader:
            item.resolve()
            return
        self._pending.append(item)
        if len(self._pending) >= self._batch_size:
            self._kick()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(
                self._batch_window, self._kick
            )

    def _kick(self) -> None:
        """Start a batch of the pending ticks, if a flush is free and any tick may go."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._pending or len(self._flushes) >= _MAX_FLUSHES:
            return
        batch: list[_Pending] = []
        names: set[str] = set()
        rest: list[_Pending] = []
        for item in self._pending:
            if item.name in self._in_flight or item.name in names or len(batch) >= _MAX_BATCH:
                rest.append(item)
            else:
                batch.append(item)
                names.add(item.name)
        self._pending = rest
        if not batch:
            return
        self._in_flight |= names
        task = asyncio.get_running_loop().create_task(
            self._flush(batch), name=f"schedule-batch:{self._instance}"
        )
        self._flushes.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._flushes.discard(finished)
            self._in_flight -= names
            for item in batch:
                item.resolve()
            if not finished.cancelled() and finished.exception() is not None:
                logger.error("schedule batch failed", exc_info=finished.exception())
            if self._pending and self.is_leader:
                if len(self._pending) >= self._batch_size or any(
                    item.name in names for item in self._pending
                ):
                    self._kick()
                elif self._flush_timer is None:
                    self._flush_timer = asyncio.get_running_loop().call_later(
                        self._batch_window, self._kick
                    )

        task.add_done_callback(done)
        if self._pending and len(self._flushes) < _MAX_FLUSHES and len(rest) >= self._batch_size:
            self._kick()

    async def _flush(self, batch: list[_Pending]) -> None:
        """Fire one batch: ticks past their grace are skipped together, the rest fired
        together (retried while the queue is unreachable)."""
        now = self._now()
        ticks: list[Tick] = []
        skips: list[Skip] = []
        for item in batch:
            schedule = self._known.get(item.name)
            if schedule is None or not self.is_leader:
                continue
            late = now - item.fire_time
            if item.kind is FiringKind.TICK and late > timedelta(
                seconds=schedule.misfire_grace_seconds
            ):
                skips.append(
                    Skip(
                        schedule=schedule,
                        kind=item.kind,
                        fire_time=item.fire_time,
                        reason=SkipReason.MISFIRE,
                        detail=f"the tick reached the queue {late.total_seconds():.3f}s late",
                    )
                )
                continue
            ticks.append(Tick(schedule=schedule, kind=item.kind, fire_time=item.fire_time))
        if skips:
            await asyncio.gather(self._firer.skip_many(skips), self._fire_all(ticks))
        else:
            await self._fire_all(ticks)

    async def _fire_all(self, ticks: list[Tick]) -> None:
        while ticks:
            try:
                await self._firer.fire_many(ticks)
                return
            except StoreUnavailable as exc:
                retry_until = self._now() + timedelta(seconds=_RETRY_PAUSE)
                keep: list[Tick] = []
                lost: list[Skip] = []
                for tick in ticks:
                    deadline = tick.fire_time + timedelta(
                        seconds=tick.schedule.misfire_grace_seconds
                    )
                    if tick.kind is FiringKind.TICK and retry_until < deadline:
                        keep.append(tick)
                    else:
                        lost.append(
                            Skip(
                                schedule=tick.schedule,
                                kind=tick.kind,
                                fire_time=tick.fire_time,
                                reason=SkipReason.STORE_UNAVAILABLE,
                                detail=str(exc),
                            )
                        )
                if lost:
                    await self._firer.skip_many(lost)
                ticks = keep
                if ticks:
                    await asyncio.sleep(_RETRY_PAUSE)
