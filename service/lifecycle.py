"""The lifecycle of ``longshore serve`` and ``longshore worker``: what they open, in which
order, and how it is closed.

:func:`open_runtime` enters, on one :class:`~contextlib.AsyncExitStack`:

1. the store (queue, job and run stores, schedule store, on one database);
2. the event store (``FileEventStore`` in ``settings.event_dir``; retention runs in
   ``serve`` only, ``worker`` opens it with retention off);
3. the artifact store and the Docker engine, the job runner (emitting run events), and
   its sweep of interrupted runs (every ``effective_stale_worker_seconds``: runs no live
   worker owns are marked failed and their containers removed);
4. the factory registry: one handler factory per ``WORKER_DURABLE_CRON_HANDLERS`` name and
   one job factory per job definition, kept in sync with the job store by
   :class:`JobFactories` (every ``JOB_FACTORY_SYNC_SECONDS`` and before every schedule save);
5. the :class:`~scheduler.manager.ScheduleManager`; in ``serve`` the presets of
   ``WORKER_DURABLE_CRON_PRESETS`` are applied and the
   :class:`~scheduler.service.SchedulerService` is started (``worker`` never fires);
6. in ``serve``, given an :class:`~service.api_server.AdminPlan`, the admin API server: the
   owned task ``admin-api`` (:func:`service.api_server.start_admin_api`).

Leaving the context closes everything in reverse: the admin API stops listening (open
requests get a few seconds), the scheduler stops (ticks in flight
finish), the factory sync stops, the Docker client closes, the event store writes what is
queued and closes, the database closes last. The worker itself runs inside the context, so
its graceful stop comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from admin.services import AdminServices
from jobrunner.docker_engine import DockerEngine
from jobrunner.runner import HANDLER as JOB_RUN_HANDLER
from jobrunner.runner import JobRunner
from scheduler.errors import UnknownFactory
from scheduler.factories import Factory, FactoryRegistry, Firing, handler_factory
from scheduler.manager import ScheduleManager
from scheduler.service import SchedulerService
from scheduler.status import DEFAULT_LAG_THRESHOLD
from service.api_server import AdminApi, AdminPlan, start_admin_api
from service.backends import Stores, open_store
from service.errors import SettingsError
from service.runtime import event_store_options, runner_config
from service.settings import Settings
from store.artifacts import ArtifactStore
from store.events.audit import AuditLog
from store.events.file import FileEventStore
from store.events.protocol import EventStore
from store.jobs.errors import IllegalTransition
from store.jobs.models import JobDefinition, RunTrigger
from store.jobs.protocol import JobStore, RunStore
from store.queue.models import NewTask, Task
from store.queue.protocol import TaskQueue
from store.queue.retry import RetryPolicy
from store.schedules.models import SCHEDULE_NAME, Schedule
from store.schedules.protocol import ScheduleStore

__all__ = [
    "JOB_FACTORY_SYNC_SECONDS",
    "JobFactories",
    "Role",
    "Runtime",
    "SyncingScheduleManager",
    "job_factory",
    "open_runtime",
]

logger = logging.getLogger(__name__)

Role = Literal["serve", "worker"]

JOB_FACTORY_SYNC_SECONDS = 5.0
"""How often the job factories are re-read from the job store."""

SCHEDULER_ACTOR = "scheduler"
RETRY_BASE_DELAY = 5.0  # as JobRunner.submit's default


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
    queue = definition.queue or default_queue
    retry = RetryPolicy(max_attempts=definition.retries + 1, base_delay=retry_base_delay)

    async def produce(firing: Firing) -> NewTask:
        return NewTask(
            handler=JOB_RUN_HANDLER,
            queue=queue,
            retry=retry,
            payload={
                "job": name,
                "trigger": RunTrigger.SCHEDULE.value,
                "scheduleName": firing.schedule,
                "actor": SCHEDULER_ACTOR,
            },
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
        await self._job_factories.sync()
        return await super().save(schedule)


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Everything :func:`open_runtime` built, for the command that runs in it."""

    role: Role
    settings: Settings
    stores: Stores
    events: FileEventStore
    artifacts: ArtifactStore
    engine: DockerEngine
    job_runner: JobRunner
    factories: FactoryRegistry
    job_factories: JobFactories
    manager: ScheduleManager
    scheduler: SchedulerService | None
    admin_api: AdminApi | None = None


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, role: Role, admin: AdminPlan | None = None
) -> AsyncIterator[Runtime]:
    """Open and wire everything ``serve`` or ``worker`` needs; see the module docstring.
    ``admin`` (``serve`` only) is the bound listener of the admin API."""
    if admin is not None and role != "serve":
        raise ValueError("only `serve` runs the admin API")
    async with AsyncExitStack() as stack:
        stores = await stack.enter_async_context(open_store(settings))
        events = await FileEventStore.open(event_store_options(settings, retention=role == "serve"))
        stack.push_async_callback(events.close)
        artifacts = ArtifactStore(settings.data_dir / "artifacts")
        engine = DockerEngine(artifacts)
        stack.callback(engine.close)
        job_runner = JobRunner(
            queue=stores.queue,
            jobs=stores.jobs,
            runs=stores.runs,
            engine=engine,
            artifacts=artifacts,
            config=runner_config(settings),
            default_queue=settings.admin_default_queue,
            events=events,
        )

        sweeping = asyncio.create_task(
            _sweep_interrupted(job_runner, settings.effective_stale_worker_seconds),
            name="orphan-sweep",
        )
        stack.push_async_callback(_cancel, sweeping)

        factories = FactoryRegistry()
        for handler in settings.durable_cron_handlers:
            factories.register(handler_factory(handler, queue=settings.admin_default_queue))
        job_factories = JobFactories(
            factories, stores.jobs, stores.runs, default_queue=settings.admin_default_queue
        )
        await job_factories.sync()
        syncing = asyncio.create_task(job_factories.run(), name="job-factory-sync")
        stack.push_async_callback(_cancel, syncing)

        lag = settings.scheduler_lag_seconds
        manager = SyncingScheduleManager(
            job_factories=job_factories,
            store=stores.schedules,
            queue=stores.queue,
            factories=factories,
            events=events,
            lag_threshold=timedelta(seconds=lag) if lag else DEFAULT_LAG_THRESHOLD,
        )

        scheduler: SchedulerService | None = None
        if role == "serve":
            await _apply_presets(manager, settings)
            scheduler = SchedulerService(
                store=stores.schedules,
                queue=stores.queue,
                factories=factories,
                events=events,
                instance=instance_name(),
            )
            await stack.enter_async_context(scheduler)
        admin_api: AdminApi | None = None
        if admin is not None:
            services = AdminServices(
                queue=stores.queue,
                audit=AuditLog(events),
                events=events,
                jobs=stores.jobs,
                runs=stores.runs,
                runner=job_runner,
                artifacts=artifacts,
                schedules=manager,
            )
            admin_api = await start_admin_api(stack, admin, services=services)
        logger.info(
            "runtime ready",
            extra={
                "role": role,
                "scheduler": scheduler is not None,
                "factories": len(factories),
                "event_dir": str(settings.event_dir),
                "event_retention": role == "serve",
                "admin_api": admin_api.url if admin_api else None,
            },
        )
        yield Runtime(
            role=role,
            settings=settings,
            stores=stores,
            events=events,
            artifacts=artifacts,
            engine=engine,
            job_runner=job_runner,
            factories=factories,
            job_factories=job_factories,
            manager=manager,
            scheduler=scheduler,
            admin_api=admin_api,
        )


async def _sweep_interrupted(job_runner: JobRunner, interval: float) -> None:
    """Every ``interval`` (the time after which a silent worker is swept as stale), end the
    runs no live worker owns any more and remove their containers: the runs of a worker that
    died while this one runs (the sweep at start only finds those that died before)."""
    failures = 0
    while True:
        await asyncio.sleep(interval)
        try:
            await job_runner.sweep_interrupted()
        except Exception as exc:  # a store or engine hiccup: try again next time
            failures += 1
            if failures == 1 or failures % 60 == 0:
                logger.warning(
                    "could not sweep interrupted runs",
                    extra={"error": str(exc), "failures": failures},
                )
        else:
            failures = 0


async def _apply_presets(manager: ScheduleManager, settings: Settings) -> None:
    if not settings.durable_cron_presets:
        return
    try:
        changed = await manager.apply_presets(settings.durable_cron_presets)
    except UnknownFactory as exc:
        raise SettingsError(
            f"WORKER_DURABLE_CRON_PRESETS: preset {exc.factory!r} names no factory "
            "(list it in WORKER_DURABLE_CRON_HANDLERS or define a job of that name)"
        ) from None
    if changed:
        logger.info(
            "schedule presets applied", extra={"schedules": [schedule.name for schedule in changed]}
        )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
