"""Keeping the disk bounded while the service runs: run retention and crash leftovers.

- :class:`CrashLeftovers` removes what a killed process left behind (run work directories,
  temporary blobs; see :mod:`jobrunner.leftovers`): once at start, right after crash recovery
  has ended the runs of the dead process (``serve`` and ``worker`` call
  :meth:`CrashLeftovers.remove` then), and every :data:`LEFTOVERS_INTERVAL` in the
  background. Both roles do it: each process may have its own work directory.
- :func:`prune_images_periodically` (``serve`` and ``worker``: each may have an engine of
  its own) runs a pass of the :class:`~jobrunner.image_retention.ImagePruner` over the
  images of its deployment's scope every ``WORKER_IMAGE_RETENTION_INTERVAL``, the first one
  a minute after the start.
- :func:`prune_runs_periodically` (``serve`` only) runs a pass of the
  :class:`~jobrunner.run_retention.RunPruner` every ``WORKER_RUN_RETENTION_INTERVAL`` while
  this process's scheduler leads, so that of several ``serve`` processes on one PostgreSQL
  database only one prunes at a time; the first pass comes as soon as it leads, after a
  sweep of the blobs no run references.

Each pass logs one line and adds to the :class:`~jobrunner.run_retention.RetentionCounters`
that the admin metrics expose. A failed pass is logged and tried again at the next one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from jobrunner.image_retention import ImagePruner, ImageRetention, log_image_report
from jobrunner.leftovers import LeftoversReport, remove_leftovers
from jobrunner.run_retention import (
    RetentionCounters,
    RetentionRule,
    RunPruner,
    RunRetention,
    log_report,
)
from scheduler.service import SchedulerService
from service.settings import Settings
from store.artifacts import ArtifactStore
from store.jobs.protocol import RunStore

logger = logging.getLogger(__name__)

LEFTOVERS_INTERVAL = 600.0
"""Seconds between two background passes over crash leftovers."""
FIRST_IMAGE_PASS_DELAY = 60.0
"""Seconds from the start to the first image retention pass (the start has enough to do)."""


def image_retention(settings: Settings) -> ImageRetention:
    """The image retention rules of ``WORKER_IMAGE_*``."""
    return ImageRetention(
        default=settings.image_retention_keep,
        jobs=settings.image_retention_jobs,
        build_cache_bytes=settings.image_build_cache_max_bytes,
    )


def run_retention(settings: Settings) -> RunRetention:
    """The retention rules of ``WORKER_RUN_RETENTION_*``."""
    return RunRetention(
        default=RetentionRule(
            keep_last=settings.run_retention_keep_last,
            keep_for=timedelta(seconds=settings.run_retention_keep_for),
        ),
        jobs={
            job: RetentionRule(keep_last=keep_last, keep_for=timedelta(seconds=keep_for))
            for job, (keep_last, keep_for) in settings.run_retention_jobs.items()
        },
    )


class CrashLeftovers:
    """Removes crash leftovers of one work directory and artifact store."""

    def __init__(
        self,
        *,
        work_dir: Path,
        cache_dir: Path,
        artifacts: ArtifactStore,
        runs: RunStore,
        counters: RetentionCounters,
    ) -> None:
        self._work_dir = work_dir
        self._cache_dir = cache_dir
        self._artifacts = artifacts
        self._runs = runs
        self._counters = counters

    async def remove(self) -> LeftoversReport | None:
        """One pass; logged, never raises (``None`` when it failed)."""
        try:
            report = await remove_leftovers(
                work_dir=self._work_dir,
                cache_dir=self._cache_dir,
                artifacts=self._artifacts,
                runs=self._runs,
            )
        except Exception as exc:  # a store hiccup: the next pass tries again
            logger.warning("could not remove crash leftovers", extra={"error": str(exc)})
            return None
        self._counters.leftovers_removed += report.run_dirs + report.temporary_files
        self._counters.leftover_bytes_freed += report.bytes_freed
        logger.info(
            "crash leftovers removed",
            extra={
                "run_dirs": report.run_dirs,
                "temporary_files": report.temporary_files,
                "bytes_freed": report.bytes_freed,
            },
        )
        return report

    async def remove_periodically(self, interval: float = LEFTOVERS_INTERVAL) -> None:
        """A pass every ``interval`` seconds (the one at start is :meth:`remove`'s caller's)."""
        while True:
            await asyncio.sleep(interval)
            await self.remove()


async def prune_runs_periodically(
    pruner: RunPruner,
    scheduler: SchedulerService,
    *,
    interval: float,
    counters: RetentionCounters,
) -> None:
    """A retention pass every ``interval`` seconds while ``scheduler`` leads (see the
    module docstring)."""
    swept = False
    while True:
        if not await scheduler.wait_until_leader(interval):
            continue
        try:
            if not swept:
                blobs, freed = await pruner.sweep_blobs()
                swept = True
                logger.info("unreferenced blobs swept", extra={"blobs": blobs, "bytes": freed})
                counters.blobs_freed += blobs
                counters.bytes_freed += freed
            report = await pruner.prune()
        except Exception as exc:  # a store hiccup: the next pass tries again
            logger.warning("run retention pass failed", extra={"error": str(exc)})
        else:
            counters.count_pass(report)
            log_report(report)
        await asyncio.sleep(interval)


async def prune_images_periodically(
    pruner: ImagePruner,
    *,
    interval: float,
    counters: RetentionCounters,
    first_delay: float = FIRST_IMAGE_PASS_DELAY,
) -> None:
    """An image retention pass every ``interval`` seconds (see the module docstring)."""
    await asyncio.sleep(min(first_delay, interval))
    while True:
        try:
            report = await pruner.prune()
        except Exception as exc:  # an engine or store hiccup: the next pass tries again
            logger.warning("image retention pass failed", extra={"error": str(exc)})
        else:
            counters.image_passes += 1
            counters.images_removed += len(report.images)
            counters.image_bytes_freed += report.bytes_freed
            counters.build_cache_bytes_freed += report.build_cache_bytes_freed
            log_image_report(report)
        await asyncio.sleep(interval)
