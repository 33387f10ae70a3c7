"""Job definitions as schedule factories: what lets a schedule fire a job.

Every job definition is a factory of its name (:func:`job_factory`) in the process's
:class:`~scheduler.factories.FactoryRegistry`, kept in sync with the job store by
:class:`JobFactories` (every :data:`JOB_FACTORY_SYNC_SECONDS` and, through
:class:`SyncingScheduleManager`, before every schedule save). The scheduler knows nothing of
jobs and the job runner nothing of schedules: this glue lives in ``service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from jobrunner.errors import InvalidParameter
from jobrunner.job_run_task import RETRY_BASE_DELAY, JobRunPayload, job_run_task
from jobrunner.params import resolve
from scheduler.factories import Factory, FactoryRegistry, Firing
from scheduler.manager import ScheduleManager
from scheduler.status import DEFAULT_LAG_THRESHOLD
from store.events.protocol import EventStore
from store.jobs.errors import IllegalTransition
from store.jobs.models import JobDefinition, RunTrigger
from store.jobs.protocol import JobStore, RunStore
from store.queue.models import NewTask, Task
from store.queue.protocol import TaskQueue
from store.schedules.models import SCHEDULE_NAME, Schedule
from store.schedules.protocol import ScheduleStore

__all__ = [
    "JOB_FACTORY_SYNC_SECONDS",
    "JobFactories",
    "SyncingScheduleManager",
    "job_factory",
]

logger = logging.getLogger(__name__)

JOB_FACTORY_SYNC_SECONDS = 5.0
"""How often the job factories are re-read from the job store."""

SCHEDULER_ACTOR = "scheduler"
"""The actor of the runs a schedule starts."""


def job_factory(
    definition: JobDefinition,
    runs: RunStore,
    *,
    default_queue: str = "default",
    retry_base_delay: float = RETRY_BASE_DELAY,
) -> Factory:
    """The factory of a job: a ``job.run`` task for the job, on its queue, with its retries.

    The payload carries no ``runId``: the ``job.run`` handler records the run (trigger
    ``schedule``, actor ``scheduler``, the schedule's name) when the task first runs.
    ``cancel_running`` asks the run store to cancel the task's unfinished run; the job
    runner polls for that and stops the container.
    """
    name = definition.name

    async def produce(firing: Firing) -> NewTask:
        # A schedule gives the job's parameters in its payload: ``{"params": {...}}``.
        params = firing.payload.get("params")
        payload = JobRunPayload(
            job=name,
            trigger=RunTrigger.SCHEDULE,
            actor=SCHEDULER_ACTOR,
            schedule_name=firing.schedule,
            params=params if isinstance(params, dict) else None,
        )
        return job_run_task(
            definition,
            payload,
            default_queue=default_queue,
            retry_base_delay=retry_base_delay,
            key=firing.key,
        )

    async def cancel_running(task: Task) -> bool:
        cancelled = False
        for run in await runs.find_by_task(task.id):
            if run.status.is_final:
                continue
            with contextlib.suppress(IllegalTransition):
                await runs.request_cancel(run.run_id)
                cancelled = True
        return cancelled

    return Factory(
        name=name, produce=produce, cancel_running=cancel_running, description=f"job {name}"
    )


class JobFactories:
    """Keeps one factory per job definition in a :class:`FactoryRegistry`.

    :meth:`sync` reads every job from the job store, registers (or refreshes) the factory of
    each and unregisters those of deleted jobs. It only touches names it registered itself:
    a handler factory (``WORKER_DURABLE_CRON_HANDLERS``) of the same name as a job wins.
    :meth:`run` syncs every ``interval`` seconds until cancelled.
    """

    PAGE = 500

    def __init__(
        self,
        registry: FactoryRegistry,
        jobs: JobStore,
        runs: RunStore,
        *,
        default_queue: str = "default",
    ) -> None:
        self._registry = registry
        self._jobs = jobs
        self._runs = runs
        self._default_queue = default_queue
        self._owned: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def names(self) -> set[str]:
        return set(self._owned)

    async def sync(self) -> None:
        async with self._lock:
            definitions = await self._all_jobs()
            seen: set[str] = set()
            for definition in definitions:
                name = definition.name
                if name not in self._owned and name in self._registry:
                    continue  # a handler factory of that name wins
                if not SCHEDULE_NAME.fullmatch(name):
                    continue  # cannot be a factory name; schedules cannot name it either
                self._registry.register(
                    job_factory(definition, self._runs, default_queue=self._default_queue)
                )
                self._owned.add(name)
                seen.add(name)
            for gone in self._owned - seen:
                self._registry.unregister(gone)
                self._owned.discard(gone)

    async def check_params(self, schedule: Schedule) -> None:
        """Refuse a schedule of a job whose ``payload.params`` break the job's parameter
        declarations (``jobrunner.params.resolve``: what its runs would be refused for)."""
        if schedule.factory not in self._owned:
            return
        definition = await self._jobs.get(schedule.factory)
        if definition is None:
            return
        given = schedule.payload.get("params")
        if given is not None and not isinstance(given, dict):
            raise InvalidParameter("*", "payload.params must be a JSON object")
        resolve(definition.params, scheduled=given)

    async def run(self, interval: float = JOB_FACTORY_SYNC_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except Exception as exc:  # a store hiccup: keep the factories we have
                logger.warning("could not refresh the job factories", extra={"error": str(exc)})

    async def _all_jobs(self) -> list[JobDefinition]:
        found: list[JobDefinition] = []
        offset = 0
        while True:
            page = await self._jobs.list_jobs(limit=self.PAGE, offset=offset)
            found.extend(page.items)
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return found


class SyncingScheduleManager(ScheduleManager):
    """A :class:`ScheduleManager` that refreshes the job factories before every save, so a
    schedule can name a job created a moment ago (by any process)."""

    def __init__(
        self,
        *,
        job_factories: JobFactories,
        store: ScheduleStore,
        queue: TaskQueue,
        factories: FactoryRegistry,
        events: EventStore | None = None,
        lag_threshold: timedelta = DEFAULT_LAG_THRESHOLD,
    ) -> None:
        super().__init__(
            store=store,
            queue=queue,
            factories=factories,
            events=events,
            lag_threshold=lag_threshold,
        )
        self._job_factories = job_factories

    async def save(self, schedule: Schedule) -> tuple[Schedule, bool]:
        """Refresh the job factories, check the parameter values a job's schedule gives
        (``payload.params``: an ``InvalidParameter`` naming the parameter), then save."""
        await self._job_factories.sync()
        await self._job_factories.check_params(schedule)
        return await super().save(schedule)
