"""Tick batches: how the leading scheduler turns the clock's ticks into firings.

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

A tick whose batch is flushed (i.e. about to be enqueued) more than the schedule's
``misfire_grace_seconds`` after its time is skipped (``misfire``); the skips of a batch are
written together (one ``record_firings``, one ``append_many``), so an overloaded scheduler
sheds late ticks cheaply and catches up instead of collapsing. While the queue is
unreachable a batch is retried until each tick's grace runs out, then those ticks are
skipped (``store_unavailable``).

On loss of leadership (:meth:`TickBatcher.drop`) ticks not yet flushed are dropped (the
next leader's catch-up sees them); batches already in flight finish, for a while: their
keys make a double enqueue harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.factories import FiringKind
from scheduler.firing import Firer, Skip, SkipReason, Tick
from store.background import TaskOwner
from store.errors import StoreUnavailable
from store.schedules.models import Schedule

__all__ = ["TickBatcher"]

# Pause between attempts to enqueue a tick while the queue is unreachable (seconds).
_RETRY_PAUSE = 0.25
# Batches in flight at once (each holds a pooled connection for its enqueue_many).
_MAX_FLUSHES = 4
# The most ticks one batch takes (the rest wait for the next).
_MAX_BATCH = 5000
# How long dropping the batches waits for those in flight (seconds).
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


class TickBatcher:
    """Collects ticks and fires them in batches while ``leading`` is set; see the module
    docstring. Batches run as tasks of ``tasks``; ``schedules`` looks up the schedule a tick
    belongs to (``None`` once it is no longer active)."""

    def __init__(
        self,
        *,
        firer: Firer,
        tasks: TaskOwner,
        schedules: Callable[[str], Schedule | None],
        leading: asyncio.Event,
        instance: str,
        batch_window: float,
        batch_size: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._firer = firer
        self._tasks = tasks
        self._schedules = schedules
        self._leading = leading
        self._instance = instance
        self._batch_window = batch_window
        self._batch_size = batch_size
        self._now = clock
        self._pending: list[_Pending] = []
        self._in_flight: set[str] = set()
        self._flushes: set[asyncio.Task[None]] = set()
        self._flush_timer: asyncio.TimerHandle | None = None

    def add_ticks(self, name: str, fire_times: list[datetime]) -> None:
        """The clock's callback: queue the ticks for their batch."""
        for fire_time in fire_times:
            self._add(_Pending(name, fire_time, FiringKind.TICK))

    async def fire_and_wait(self, ticks: Sequence[Tick]) -> None:
        """Queue ``ticks`` for their batches and wait until each was handled (fired,
        skipped, or dropped with the batches)."""
        loop = asyncio.get_running_loop()
        items = [
            _Pending(tick.schedule.name, tick.fire_time, tick.kind, loop.create_future())
            for tick in ticks
        ]
        for item in items:
            self._add(item)
        waits = [item.done for item in items if item.done is not None]
        if waits:
            await asyncio.gather(*waits)

    async def drop(self) -> None:
        """Leadership ended: drop the ticks not yet flushed, give the batches in flight
        ``_STOP_TIMEOUT`` seconds to finish and cancel the others."""
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

    def _add(self, item: _Pending) -> None:
        if not self._leading.is_set():
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
        task = self._tasks.spawn(self._flush(batch), name=f"schedule-batch:{self._instance}")
        self._flushes.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            # A failed batch is logged by the task owner.
            self._flushes.discard(finished)
            self._in_flight -= names
            for item in batch:
                item.resolve()
            if self._pending and self._leading.is_set():
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
            schedule = self._schedules(item.name)
            if schedule is None or not self._leading.is_set():
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
