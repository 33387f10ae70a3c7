"""The lifecycle of ``longshore serve`` and ``longshore worker``: what they open, in which
order, and how it is closed.

:func:`open_runtime` enters, on one :class:`~contextlib.AsyncExitStack`:

1. the store (queue, job and run stores, schedule store, on one database);
2. the event store (``FileEventStore`` in ``settings.event_dir``; retention runs in
   ``serve`` only, ``worker`` opens it with retention off);
3. the artifact store and the Docker engine, the job runner (emitting run events), and
   its sweep of interrupted runs (every ``effective_stale_worker_seconds``: runs no live
   worker owns are marked failed and their containers removed); the removal of crash
   leftovers every ``LEFTOVERS_INTERVAL`` (the pass at start is the command's, after crash
   recovery), image retention every ``WORKER_IMAGE_RETENTION_INTERVAL`` and, in ``serve``,
   run retention while its scheduler leads (:mod:`service.retention`);
4. the factory registry: one handler factory per ``WORKER_DURABLE_CRON_HANDLERS`` name and
   one job factory per job definition, kept in sync with the job store by
   :class:`~service.job_schedules.JobFactories` (every ``JOB_FACTORY_SYNC_SECONDS`` and
   before every schedule save);
5. the :class:`~scheduler.manager.ScheduleManager`; in ``serve`` the presets of
   ``WORKER_DURABLE_CRON_PRESETS`` are applied and the
   :class:`~scheduler.service.SchedulerService` is started (``worker`` never fires);
6. in ``serve``, given an :class:`~service.api_server.AdminPlan`, the admin API server: the
   owned task ``admin-api`` (:func:`service.api_server.start_admin_api`).

Leaving the context closes everything in reverse: the admin API stops listening (open
requests get a few seconds), the scheduler stops (ticks in flight finish), the factory sync,
the sweep and the retention passes stop (owned by one :class:`~store.background.TaskOwner`),
the job runner sends its last run events, the Docker engine finishes the container removals
under way and closes its client, the event store writes what is queued and closes, the
database closes last. The worker itself runs inside the context, so its graceful stop comes
first.
"""

from __future__ import annotations

import asyncio
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
from jobrunner.image_retention import ImagePruner
from jobrunner.run_retention import RetentionCounters, RunPruner
from jobrunner.runner import JobRunner
from jobrunner.sources.tarball.download import cache_dir
from scheduler.errors import UnknownFactory
from scheduler.factories import FactoryRegistry, handler_factory
from scheduler.manager import ScheduleManager
from scheduler.service import SchedulerService
from scheduler.status import DEFAULT_LAG_THRESHOLD
from service.api_server import AdminApi, AdminPlan, start_admin_api
from service.backends import Stores, open_store
from service.errors import SettingsError
from service.job_schedules import JobFactories, SyncingScheduleManager
from service.notifications.delivery import Deliverer
from service.notifications.notifier import Notifier
from service.notifications.observer import NotificationObserver
from service.retention import (
    CrashLeftovers,
    image_retention,
    prune_images_periodically,
    prune_runs_periodically,
    run_retention,
)
from service.runtime import build_journal_dir, event_store_options, runner_config
from service.settings import Settings
from service.smtp_settings import smtp_mailer
from store.artifacts import ArtifactStore
from store.background import TaskOwner
from store.events.audit import AuditLog
from store.events.audit_journal import AuditJournal
from store.events.file import FileEventStore
from store.queue.retry import RetryPolicy

__all__ = ["Role", "Runtime", "open_runtime"]

logger = logging.getLogger(__name__)

Role = Literal["serve", "worker"]


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
    leftovers: CrashLeftovers
    retention: RetentionCounters
    notifier: Notifier
    deliverer: Deliverer
    observer: NotificationObserver
    """The worker's hook that enqueues the notifications of runs."""
    admin_api: AdminApi | None = None

    def notification_observer(self) -> NotificationObserver:
        """The worker's hook that enqueues the notifications of runs."""
        return self.observer


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
        # The secrets key is made (0600) on the first start, and a bad one stops the start.
        await asyncio.to_thread(stores.secrets_box.load)
        # Rule secrets saved in clear by an older version are sealed with that key.
        if resealed := await stores.notifications.seal_plain_secrets():
            logger.info("notification rule secrets sealed at rest", extra={"rules": resealed})
        events = await FileEventStore.open(event_store_options(settings, retention=role == "serve"))
        stack.push_async_callback(events.close)
        artifacts = ArtifactStore(settings.data_dir / "artifacts")
        config = runner_config(settings)
        engine = DockerEngine(
            artifacts,
            build_cgroup_root=settings.job_build_cgroup_root,
            artifact_holder_spares=1,
            build_journal_dir=build_journal_dir(config.work_dir),
        )
        stack.push_async_callback(engine.aclose)
        job_runner = JobRunner(
            queue=stores.queue,
            jobs=stores.jobs,
            runs=stores.runs,
            engine=engine,
            artifacts=artifacts,
            config=config,
            default_queue=settings.admin_default_queue,
            events=events,
            infra_retry_seconds=settings.infra_retry_seconds,
            secrets=stores.secrets,
        )
        stack.push_async_callback(job_runner.close)
        notifier = Notifier(
            rules=stores.notifications,
            runs=stores.runs,
            queue=stores.queue,
            queue_name=settings.notify_queue or settings.admin_default_queue,
            retry=RetryPolicy(
                max_attempts=settings.notify_attempts, base_delay=settings.notify_retry_seconds
            ),
        )
        deliverer = Deliverer(
            rules=stores.notifications,
            box=stores.secrets_box,
            events=events,
            response_max_bytes=settings.notify_response_max_bytes,
            mailer=smtp_mailer(settings),
        )
        observer = NotificationObserver(notifier, stores.runs)
        stack.push_async_callback(observer.close)

        background = TaskOwner("runtime")
        stack.push_async_callback(background.close)
        background.spawn(
            _sweep_interrupted(job_runner, settings.effective_stale_worker_seconds),
            name="orphan-sweep",
        )
        counters = RetentionCounters()
        leftovers = CrashLeftovers(
            work_dir=config.work_dir,
            cache_dir=cache_dir(config),
            artifacts=artifacts,
            runs=stores.runs,
            counters=counters,
        )
        background.spawn(leftovers.remove_periodically(), name="crash-leftovers")
        if settings.image_retention_interval > 0:
            images = ImagePruner(
                images=engine.images,
                runs=stores.runs,
                scope=job_runner.scope,
                retention=image_retention(settings),
            )
            background.spawn(
                prune_images_periodically(
                    images, interval=settings.image_retention_interval, counters=counters
                ),
                name="image-retention",
            )

        factories = FactoryRegistry()
        for handler in settings.durable_cron_handlers:
            factories.register(handler_factory(handler, queue=settings.admin_default_queue))
        job_factories = JobFactories(
            factories, stores.jobs, stores.runs, default_queue=settings.admin_default_queue
        )
        await job_factories.sync()
        background.spawn(job_factories.run(), name="job-factory-sync")

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
                on_missed=notifier.firings_missed,
            )
            await stack.enter_async_context(scheduler)
            if settings.run_retention_interval > 0:
                pruner = RunPruner(
                    runs=stores.runs, artifacts=artifacts, retention=run_retention(settings)
                )
                background.spawn(
                    prune_runs_periodically(
                        pruner,
                        scheduler,
                        interval=settings.run_retention_interval,
                        counters=counters,
                    ),
                    name="run-retention",
                )
        admin_api: AdminApi | None = None
        if admin is not None:
            # Intents of mutations a crashed process began are recorded before serving.
            journal = AuditJournal(settings.data_dir / "audit-intents")
            journal.open()
            stack.callback(journal.close)
            audit = AuditLog(events, journal=journal)
            await audit.recover()
            services = AdminServices(
                queue=stores.queue,
                audit=audit,
                events=events,
                jobs=stores.jobs,
                runs=stores.runs,
                runner=job_runner,
                artifacts=artifacts,
                schedules=manager,
                retention=counters,
                secrets=stores.secrets,
                notifications=stores.notifications,
                notification_tests=notifier,
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
            leftovers=leftovers,
            retention=counters,
            notifier=notifier,
            deliverer=deliverer,
            observer=observer,
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
