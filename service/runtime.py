"""Wiring from settings: the handler registry, worker options, the job runner's config and
the event store's options. Only plain values leave ``service``."""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path

from jobrunner.config import BuildPolicy, JobCeilings, RunnerConfig, SourceLimits
from jobrunner.engine import ArtifactLimits
from jobrunner.job_run_task import HANDLER as JOB_RUN_HANDLER
from jobrunner.runner import JobRunner
from service.builtins import register_builtins
from service.notifications.delivery import Deliverer
from service.notifications.notifier import HANDLER as NOTIFY_HANDLER
from service.settings import Settings
from service.worker import HandlerRegistry, WorkerOptions
from store.events.models import Durability, Stream
from store.events.options import EventStoreOptions, RetentionPolicy

GC_THRESHOLDS = (50_000, 20, 100)
"""The collector's thresholds once the service runs (Python's defaults: 700, 10, 10)."""


def settle_heap() -> None:
    """Take what start-up built out of the garbage collector's view, and collect less often.

    A long-running service holds tens of thousands of long-lived objects (modules, the
    scheduler's timers, pools, caches). With the default thresholds every full collection
    walks all of them: 25-80 ms pauses on the reference machine, several a minute, which is
    what made a scheduler tick late now and then. ``gc.freeze()`` moves the start-up objects
    to a permanent generation that collections skip, and higher thresholds make the
    collections that remain rarer. Reference cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_registry(
    job_runner: JobRunner | None = None, *, deliverer: Deliverer | None = None
) -> HandlerRegistry:
    """Every handler this build of Longshore knows; ``job.run`` when given a job runner,
    ``notify.deliver`` when given a deliverer."""
    registry = HandlerRegistry()
    register_builtins(registry)
    if job_runner is not None:
        registry.register(JOB_RUN_HANDLER, job_runner.handle, on_late_result=job_runner.late_result)
    if deliverer is not None:
        registry.register(NOTIFY_HANDLER, deliverer.handle)
    return registry


def worker_options(
    settings: Settings, *, drain: bool = False, queues: list[str] | None = None
) -> WorkerOptions:
    return WorkerOptions(
        concurrency=settings.concurrency,
        lease=timedelta(seconds=settings.lease_seconds),
        heartbeat_interval=settings.effective_heartbeat_seconds,
        poll_interval=settings.poll_interval_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
        stale_after=timedelta(seconds=settings.effective_stale_worker_seconds),
        claim_batch=settings.claim_batch,
        key_retention=timedelta(seconds=settings.key_retention_seconds),
        queues=tuple(queues) if queues else None,
        drain=drain,
    )


def runner_config(settings: Settings) -> RunnerConfig:
    """The job runner's limits and allowlists from ``WORKER_JOB_*``."""
    return RunnerConfig(
        work_dir=settings.job_work_dir,
        repo_allowlist=settings.job_repo_allowlist,
        tarball_allowlist=settings.job_tarball_allowlist,
        tarball_dir=settings.job_tarball_dir,
        tarball_max_bytes=settings.job_tarball_max_bytes,
        tarball_timeout=settings.job_tarball_timeout,
        git_timeout=settings.job_git_timeout,
        ca_file=settings.job_ca_file,
        allow_private_hosts=settings.job_allow_private_hosts,
        network_allowlist=settings.job_network,
        output_bytes=settings.job_output_bytes,
        archive_limits=SourceLimits(
            max_entries=settings.job_archive_max_entries,
            max_file_bytes=settings.job_archive_max_file_bytes,
            max_total_bytes=settings.job_archive_max_bytes,
        ),
        ceilings=JobCeilings(
            max_memory_mb=settings.job_max_memory_mb,
            max_cpus=settings.job_max_cpus,
            max_pids=settings.job_max_pids,
            max_timeout_seconds=settings.job_max_timeout_seconds,
        ),
        build=BuildPolicy(
            base_images=settings.job_base_images,
            pull=settings.job_pull,
            pull_timeout=settings.job_pull_timeout,
        ),
        artifact_limits=_artifact_limits(settings.job_artifacts_max_bytes),
    )


def _artifact_limits(max_total_bytes: int) -> ArtifactLimits:
    """The artifacts caps with ``WORKER_JOB_ARTIFACTS_MAX_BYTES`` in all (a file may not be
    larger than the whole)."""
    default = ArtifactLimits()
    return ArtifactLimits(
        max_files=default.max_files,
        max_file_bytes=min(default.max_file_bytes, max_total_bytes),
        max_total_bytes=max_total_bytes,
    )


def event_store_options(settings: Settings, *, retention: bool = True) -> EventStoreOptions:
    """The event store's layout, durability and retention from ``WORKER_JOB_EVENT_*`` and
    ``WORKER_ADMIN_AUDIT_*``. With ``retention=False`` (``longshore worker``) the store
    removes nothing: only one process per event directory should run retention (``serve``,
    see docs/events.md, "Several processes on one host")."""
    per_key = RetentionPolicy(max_per_key=settings.job_event_max_entries)
    retention_age = settings.admin_audit_retention
    audit = RetentionPolicy(
        max_total=settings.admin_audit_event_limit,
        max_age=timedelta(seconds=retention_age) if retention_age else None,
    )
    policies = {Stream.RUNS: per_key, Stream.SCHEDULES: per_key, Stream.AUDIT: audit}
    if not retention:
        policies = {stream: RetentionPolicy() for stream in Stream}
    return EventStoreOptions(
        directory=settings.event_dir,
        durability=Durability(settings.job_event_durability),
        retention=policies,
        retention_interval=settings.admin_audit_archive_interval,
        archive_dir=settings.admin_audit_archive_dir,
        export_limit_max=settings.admin_audit_export_limit_max,
    )


def build_journal_dir(work_dir: Path) -> Path:
    """Where the Docker engine journals the images of its builds under way (so that image
    retention finds what a build whose process died left)."""
    return work_dir / "image-builds"
