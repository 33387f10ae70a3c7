"""The only module driving APScheduler 3.11 (untyped: the ignores stay here).

:class:`TickClock` is an ``AsyncIOScheduler`` with an in-memory job store: one job per active
schedule (the job id is the schedule name) on a :class:`~scheduler.triggers.CronSpecTrigger`.
APScheduler only keeps time; a tick is handed to ``on_ticks(name, fire_times)`` with its
*scheduled* fire times, which APScheduler's own executors never pass to the job. That is why
the clock has its own executor: the fire time is what the queue key is made of.

APScheduler's misfire grace and coalescing are off: every scheduled fire time reaches
``on_ticks``, which applies each schedule's own ``misfire_grace_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.base import BaseExecutor  # type: ignore[import-untyped]
from apscheduler.jobstores.memory import MemoryJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from scheduler.spec import CronSpec, next_fire_time
from scheduler.triggers import CronSpecTrigger

__all__ = ["OnTicks", "TickClock"]

logger = logging.getLogger(__name__)

OnTicks = Callable[[str, list[datetime]], Coroutine[Any, Any, None]]

_EXECUTOR = "ticks"
# APScheduler refuses to submit a job that has this many runs in flight; ticks only enqueue,
# so reaching it means the store is stuck, and a refused tick would be lost silently.
_MAX_INSTANCES = 1000
_MICROSECOND = timedelta(microseconds=1)


class _TickExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs ``on_ticks(job id, scheduled fire times)`` as an owned task on the loop."""

    def __init__(self, on_ticks: OnTicks) -> None:
        super().__init__()
        self._on_ticks = on_ticks
        self.pending: set[asyncio.Task[None]] = set()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        name = str(job.id)
        task = asyncio.get_running_loop().create_task(
            self._on_ticks(name, list(run_times)), name=f"schedule-tick:{name}"
        )
        self.pending.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self.pending.discard(finished)
            self._run_job_success(job.id, [])
            if not finished.cancelled() and finished.exception() is not None:
                logger.error(
                    "schedule tick failed",
                    exc_info=finished.exception(),
                    extra={"schedule": name},
                )

        task.add_done_callback(done)


class TickClock:
    """APScheduler keeping the time of the active schedules; see the module docstring.

    Create, :meth:`start` and :meth:`stop` it inside the running event loop.
    """

    def __init__(self, on_ticks: OnTicks) -> None:
        self._executor = _TickExecutor(on_ticks)
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={_EXECUTOR: self._executor},
            timezone=UTC,
            job_defaults={
                "misfire_grace_time": None,
                "coalesce": False,
                "max_instances": _MAX_INSTANCES,
            },
        )
        self._names: set[str] = set()

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop ticking, then wait up to ``timeout`` seconds for ticks in flight."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._names.clear()
        pending = set(self._executor.pending)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()

    def put(self, name: str, spec: CronSpec, zone: ZoneInfo, *, after: datetime) -> None:
        """Tick for ``name`` from the first fire time at or after ``after``, replacing any
        timer it had."""
        first = next_fire_time(spec, after - _MICROSECOND, zone)
        if first is None:
            self.remove(name)
            return
        self._scheduler.add_job(
            _never_called,
            trigger=CronSpecTrigger(spec, zone),
            id=name,
            name=name,
            executor=_EXECUTOR,
            next_run_time=first,
            replace_existing=True,
        )
        self._names.add(name)

    def remove(self, name: str) -> None:
        if name in self._names:
            self._names.discard(name)
            self._scheduler.remove_job(name)

    def names(self) -> set[str]:
        return set(self._names)

    def next_fire_time(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(name)
        return None if job is None else job.next_run_time


def _never_called() -> None:
    """APScheduler wants a job function; the tick executor calls ``on_ticks`` instead."""
    raise AssertionError("schedule ticks run through the tick executor")
