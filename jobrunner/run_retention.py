"""Retention of runs: deleting the runs a policy lets go, and freeing the blobs they used.

A pass goes job by job (every job that has runs, defined or not). For each it deletes, in
batches of at most ``batch_size`` runs (one short transaction each, so no lock is held for
long and API requests interleave), the runs :meth:`RunStore.prunable_runs
<store.jobs.protocol.RunStore.prunable_runs>` lists for the job's :class:`RetentionRule`:
final runs past the ``keep_last`` newest, older than ``keep_for``, other than the job's newest
success and newest failure. Unfinished runs are never deleted.

After each batch the blobs the deleted runs referenced (output, source artifact, artifacts)
that no run references any more are discarded from the artifact store. A blob written after
the first stage of the oldest run still under way is spared (that run may have stored it and
not recorded it yet, see :meth:`ArtifactStore.discard <store.artifacts.ArtifactStore.discard>`)
and retried at the next pass; :meth:`RunPruner.sweep_blobs` (at start) frees any blob no run
references, also those a restart forgot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from store.artifacts import ArtifactStore
from store.jobs.protocol import RunStore

logger = logging.getLogger(__name__)

CLOCK_MARGIN = timedelta(minutes=5)
"""Spared on top of the oldest run under way: the database's clock (PostgreSQL) and the
artifact store's file times may differ by this much."""
DEFERRED_MAX = 100_000
"""The most young blobs remembered for the next pass; beyond, the sweep at start frees them."""
_SWEEP_CHUNK = 500
BATCH_PAUSE = 0.05
"""Seconds slept between two batches in the background: a pass shares the database and the
event loop with the API (``longshore runs prune`` does not pause)."""


@dataclass(frozen=True, kw_only=True)
class RetentionRule:
    """Which runs of a job are kept (on top of every unfinished run and the newest success
    and failure): the ``keep_last`` newest, and all created within ``keep_for``."""

    keep_last: int = 100
    keep_for: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise ValueError("keep_last must be at least 1")
        if self.keep_for < timedelta(0):
            raise ValueError("keep_for must not be negative")


@dataclass(frozen=True, kw_only=True)
class RunRetention:
    """The rule of every job (``default``) and the jobs that have their own (``jobs``)."""

    default: RetentionRule = field(default_factory=RetentionRule)
    jobs: Mapping[str, RetentionRule] = field(default_factory=dict)

    def rule_for(self, job: str) -> RetentionRule:
        return self.jobs.get(job, self.default)


@dataclass(frozen=True, kw_only=True)
class PruneReport:
    """What one pass deleted (or, with ``dry_run``, would delete: runs only)."""

    dry_run: bool
    jobs: int
    runs_deleted: int
    blobs_freed: int
    bytes_freed: int
    seconds: float
    by_job: Mapping[str, int]


@dataclass
class RetentionCounters:
    """Totals since the process started, for the metrics (``longshore_retention_*``)."""

    passes: int = 0
    runs_deleted: int = 0
    blobs_freed: int = 0
    bytes_freed: int = 0
    last_pass_seconds: float = 0.0
    leftovers_removed: int = 0
    leftover_bytes_freed: int = 0
    image_passes: int = 0
    images_removed: int = 0
    image_bytes_freed: int = 0
    build_cache_bytes_freed: int = 0

    def count_pass(self, report: PruneReport) -> None:
        self.passes += 1
        self.runs_deleted += report.runs_deleted
        self.blobs_freed += report.blobs_freed
        self.bytes_freed += report.bytes_freed
        self.last_pass_seconds = report.seconds


class RunPruner:
    """Applies a :class:`RunRetention` to a run store and its artifact store (see the module
    docstring). ``pause`` seconds are slept between batches to leave the database to others.
    One pruner per process; two processes pruning at once are safe (each deletes only final
    runs and frees only blobs no run references) but do the work twice."""

    def __init__(
        self,
        *,
        runs: RunStore,
        artifacts: ArtifactStore,
        retention: RunRetention,
        batch_size: int = 200,
        pause: float = BATCH_PAUSE,
        clock_margin: timedelta = CLOCK_MARGIN,
    ) -> None:
        self._runs = runs
        self._artifacts = artifacts
        self._retention = retention
        self._batch = batch_size
        self._pause = pause
        self._margin = clock_margin
        self._deferred: set[str] = set()

    async def prune(self, *, dry_run: bool = False) -> PruneReport:
        """One pass over every job; ``dry_run`` only counts the runs that would go."""
        started = time.monotonic()
        by_job: dict[str, int] = {}
        blobs = freed = 0
        jobs = await self._runs.jobs_with_runs()
        for job in jobs:
            rule = self._retention.rule_for(job)
            if dry_run:
                count = await self._count(job, rule)
            else:
                count, job_blobs, job_bytes = await self._prune_job(job, rule)
                blobs, freed = blobs + job_blobs, freed + job_bytes
            if count:
                by_job[job] = count
        if not dry_run and self._deferred:
            retried = self._deferred
            self._deferred = set()
            more_blobs, more_bytes = await self._free(retried)
            blobs, freed = blobs + more_blobs, freed + more_bytes
        return PruneReport(
            dry_run=dry_run,
            jobs=len(jobs),
            runs_deleted=sum(by_job.values()),
            blobs_freed=blobs,
            bytes_freed=freed,
            seconds=time.monotonic() - started,
            by_job=by_job,
        )

    async def sweep_blobs(self) -> tuple[int, int]:
        """Discard every stored blob that no run references and that was written before the
        oldest run under way started; return how many blobs and bytes."""
        digests = await asyncio.to_thread(lambda: list(self._artifacts.digests()))
        blobs = freed = 0
        for at in range(0, len(digests), _SWEEP_CHUNK):
            count, size = await self._free(digests[at : at + _SWEEP_CHUNK], defer=False)
            blobs, freed = blobs + count, freed + size
        return blobs, freed

    async def _count(self, job: str, rule: RetentionRule) -> int:
        count = 0
        while page := await self._runs.prunable_runs(
            job, keep_last=rule.keep_last, keep_for=rule.keep_for, limit=1000, offset=count
        ):
            count += len(page)
        return count

    async def _prune_job(self, job: str, rule: RetentionRule) -> tuple[int, int, int]:
        deleted = blobs = freed = 0
        while run_ids := await self._runs.prunable_runs(
            job, keep_last=rule.keep_last, keep_for=rule.keep_for, limit=self._batch
        ):
            gone = await self._runs.delete_runs(run_ids)
            deleted += len(gone.run_ids)
            count, size = await self._free(gone.blobs)
            blobs, freed = blobs + count, freed + size
            if not gone.run_ids:  # all became unprunable meanwhile (cannot loop forever)
                break
            if self._pause:
                await asyncio.sleep(self._pause)
        return deleted, blobs, freed

    async def _free(self, candidates: Iterable[str], *, defer: bool = True) -> tuple[int, int]:
        """Discard those of ``candidates`` no run references; defer the young ones."""
        wanted = set(candidates)
        if not wanted:
            return 0, 0
        unused = wanted - await self._runs.referenced_blobs(wanted)
        if not unused:
            return 0, 0
        written_before = (await self._oldest_under_way() - self._margin).timestamp()

        def discard() -> tuple[int, int, list[str]]:
            count = size = 0
            young: list[str] = []
            for digest in sorted(unused):
                freed = self._artifacts.discard(digest, written_before=written_before)
                if freed:
                    count, size = count + 1, size + freed
                elif self._artifacts.exists(digest):
                    young.append(digest)
            return count, size, young

        count, size, young = await asyncio.to_thread(discard)
        if defer and len(self._deferred) < DEFERRED_MAX:
            self._deferred.update(young[: DEFERRED_MAX - len(self._deferred)])
        return count, size

    async def _oldest_under_way(self) -> datetime:
        """When the oldest run that may still store blobs started (now if none): a run
        stores blobs from its first stage on, so a queued run does not count."""
        oldest = datetime.now().astimezone()
        for run in await self._runs.active_runs():
            begun = run.fetching_at or run.building_at or run.running_at
            if begun is not None:
                oldest = min(oldest, begun)
        return oldest


def log_report(report: PruneReport) -> None:
    """The one log line of a pass."""
    logger.info(
        "run retention pass" + (" (dry run)" if report.dry_run else ""),
        extra={
            "jobs": report.jobs,
            "runs_deleted": report.runs_deleted,
            "blobs_freed": report.blobs_freed,
            "bytes_freed": report.bytes_freed,
            "seconds": round(report.seconds, 3),
        },
    )
