"""The only module driving APScheduler 3.11 (untyped: the ignores stay here).

:class:`TickClock` is an ``AsyncIOScheduler`` with an in-memory job store. Schedules that
tick at the same instants (one spec, one time zone) share one APScheduler job on a
:class:`~scheduler.triggers.CronSpecTrigger`: a thousand schedules firing every second cost
APScheduler one job wake-up per second, not a thousand (its per-job bookkeeping, about
30-40 us a job, would otherwise delay the last tick of the second by tens of
milliseconds). Each member keeps the first fire time it may get (a schedule put or resumed
now never receives a tick before that), so a shared job behaves as one job per schedule.

APScheduler only keeps time; a tick is handed to ``on_ticks(name, fire_times)`` with its
*scheduled* fire times, which APScheduler's own executors never pass to the job. That is why
the clock has its own executor: the fire time is what the queue key is made of.
``on_ticks`` is a plain (synchronous) callback called from APScheduler's wake-up: it only
hands the ticks over (the service batches the ticks due at one instant and fires them
together), so no task is created per tick and the clock has nothing in flight to wait for.

APScheduler's misfire grace and coalescing are off: every scheduled fire time reaches
``on_ticks``, which applies each schedule's own ``misfire_grace_seconds``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from apscheduler.executors.base import BaseExecutor  # type: ignore[import-untyped]
from apscheduler.jobstores.memory import MemoryJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from scheduler.spec import CronSpec, next_fire_time
from scheduler.triggers import CronSpecTrigger

__all__ = ["OnTicks", "TickClock"]

logger = logging.getLogger(__name__)

OnTicks = Callable[[str, list[datetime]], None]

_EXECUTOR = "ticks"
# APScheduler refuses to submit a job that has this many runs in flight; a run ends as soon
# as its ticks are handed over, so this is never reached.
_MAX_INSTANCES = 1000
_MICROSECOND = timedelta(microseconds=1)
# The most ticks handed over at once to a schedule put behind its shared job.
_MAX_MISSED = 1000


class _TickExecutor(BaseExecutor):  # type: ignore[misc]
    """Hands ``(job id, scheduled fire times)`` to ``deliver`` at once, on the loop."""

    def __init__(self, deliver: Callable[[str, list[datetime]], None]) -> None:
        super().__init__()
        self._deliver = deliver

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        try:
            self._deliver(str(job.id), list(run_times))
        except Exception:
            logger.exception("schedule tick failed", extra={"job": str(job.id)})
        # After submit_job has counted this run in (it does so once this returns).
        asyncio.get_running_loop().call_soon(self._run_job_success, job.id, [])


@dataclass(eq=False)
class _Group:
    """The schedules ticking on one (spec, zone), sharing the APScheduler job ``job_id``;
    ``members`` maps each name to the first fire time it may receive."""

    job_id: str
    spec: CronSpec
    zone: ZoneInfo
    members: dict[str, datetime] = field(default_factory=dict)


class TickClock:
    """APScheduler keeping the time of the active schedules; see the module docstring.

    Create, :meth:`start` and :meth:`stop` it inside the running event loop.
    """

    def __init__(self, on_ticks: OnTicks) -> None:
        self._on_ticks = on_ticks
        self._executor = _TickExecutor(self._deliver)
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
        self._groups: dict[tuple[CronSpec, str], _Group] = {}
        self._by_job: dict[str, _Group] = {}
        self._member_of: dict[str, _Group] = {}
        self._job_ids = itertools.count(1)

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop ticking (ticks already handed over are the caller's)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._groups.clear()
        self._by_job.clear()
        self._member_of.clear()

    def put(self, name: str, spec: CronSpec, zone: ZoneInfo, *, after: datetime) -> None:
        """Tick for ``name`` from the first fire time at or after ``after``, replacing any
        timer it had."""
        self.remove(name)
        first = next_fire_time(spec, after - _MICROSECOND, zone)
        if first is None:
            return
        group = self._groups.get((spec, zone.key))
        if group is None:
            group = _Group(job_id=f"ticks-{next(self._job_ids)}", spec=spec, zone=zone)
            self._groups[(spec, zone.key)] = group
            self._by_job[group.job_id] = group
        job = self._scheduler.get_job(group.job_id)
        if job is None or job.next_run_time is None:
            self._add_job(group, first)
        elif first < job.next_run_time:
            # The shared job has passed ticks this schedule's own timer would still fire
            # (``after`` lies before the job's last wake-up): hand them over now.
            missed = self._ticks_between(group, first, job.next_run_time)
            if missed:
                asyncio.get_running_loop().call_soon(self._deliver_missed, name, group, missed)
        group.members[name] = first
        self._member_of[name] = group

    def remove(self, name: str) -> None:
        group = self._member_of.pop(name, None)
        if group is None:
            return
        group.members.pop(name, None)
        if not group.members:
            del self._groups[(group.spec, group.zone.key)]
            del self._by_job[group.job_id]
            if self._scheduler.get_job(group.job_id) is not None:
                self._scheduler.remove_job(group.job_id)

    def names(self) -> set[str]:
        return set(self._member_of)

    def next_fire_time(self, name: str) -> datetime | None:
        group = self._member_of.get(name)
        if group is None:
            return None
        job = self._scheduler.get_job(group.job_id)
        if job is None or job.next_run_time is None:
            return None
        first = group.members[name]
        if first <= job.next_run_time:
            return cast(datetime, job.next_run_time)
        return first

    def _add_job(self, group: _Group, first: datetime) -> None:
        self._scheduler.add_job(
            _never_called,
            trigger=CronSpecTrigger(group.spec, group.zone),
            id=group.job_id,
            name=group.spec.text,
            executor=_EXECUTOR,
            next_run_time=first,
            replace_existing=True,
        )

    def _ticks_between(self, group: _Group, first: datetime, until: datetime) -> list[datetime]:
        ticks: list[datetime] = []
        tick: datetime | None = first
        while tick is not None and tick < until and len(ticks) < _MAX_MISSED:
            ticks.append(tick)
            tick = next_fire_time(group.spec, tick, group.zone)
        return ticks

    def _deliver(self, job_id: str, run_times: list[datetime]) -> None:
        group = self._by_job.get(job_id)
        if group is None:
            return
        for name, first in list(group.members.items()):
            times = [t for t in run_times if t >= first]
            if times:
                self._on_ticks(name, times)

    def _deliver_missed(self, name: str, group: _Group, ticks: list[datetime]) -> None:
        first = group.members.get(name)
        if first is not None and self._member_of.get(name) is group:
            self._on_ticks(name, [t for t in ticks if t >= first])


def _never_called() -> None:
    """APScheduler wants a job function; the tick executor calls ``on_ticks`` instead."""
    raise AssertionError("schedule ticks run through the tick executor")
