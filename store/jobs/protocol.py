"""The contracts of job definitions and runs in the store.

Every backend (``store.jobs.sqlite``, ``store.jobs.postgres``) implements :class:`JobStore`
and :class:`RunStore`; the contract suite in ``tests/contract`` (``test_jobs_*``,
``test_runs_*``) holds each to these docstrings.

Run lifecycle
-------------
A run is recorded ``queued`` and moves forwards through ``fetching``, ``building`` and
``running`` to one final status (``succeeded``, ``failed``, ``timed_out``, ``cancelled``).
Stages may be skipped (an image built before is not rebuilt; a run cancelled while queued
never fetches) but never revisited, and a final run never changes again. Entering a stage
stamps its time (``fetching_at``, ...); entering a final status stamps ``finished_at``.
Times come from the database's clock on PostgreSQL and the process's clock on SQLite.

Retention
---------
Runs are deleted only by retention (:meth:`RunStore.prunable_runs` picks them,
:meth:`RunStore.delete_runs` deletes them), and only final runs: an unfinished run is never
deleted. The store also keeps, for every run, the digests of the artifact-store blobs the
run references (``output_sha256``, ``source_sha256``, each artifact's ``sha256``), so that
:meth:`RunStore.referenced_blobs` answers by an index whether a blob is still needed.

Errors
------
Every method may raise :class:`store.errors.StoreUnavailable` when the database cannot be
reached; nothing the call would have written is then acknowledged. Arguments that break a
storage rule (a job name not matching :data:`~store.jobs.models.JOB_NAME`, a negative page
bound, a malformed artifact) raise :class:`~store.jobs.errors.InvalidJobRecord` before
anything is written. The store does not apply the job runner's definition rules
(allowlists, schemes, paths): callers validate with ``jobrunner.definition`` first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Protocol, Unpack

from store.jobs.models import (
    DeletedRuns,
    JobDefinition,
    NewRun,
    Page,
    Run,
    RunArtifact,
    RunFields,
    RunStatus,
    ScheduleHealth,
)


class JobStore(Protocol):
    """Job definitions, keyed by name."""

    async def upsert(self, definition: JobDefinition) -> tuple[JobDefinition, bool]:
        """Save ``definition`` under its name; return it as stored and whether it was new.

        A new definition gets revision 1 and ``created_at`` = ``updated_at`` = now. Saving
        over an existing one replaces every field, increments the revision and sets
        ``updated_at``; ``created_at`` is kept. The ``revision``, ``created_at`` and
        ``updated_at`` of the argument are ignored. Two concurrent saves of one name both
        succeed, one after the other (revisions n+1 and n+2); neither is lost half-way.
        A definition deleted and saved again starts over at revision 1. A ``source`` that
        is not a registered source type of the database (a row of ``job_sources``, added by
        the migration that brings the type in) is refused with
        :class:`~store.errors.StoreError` and nothing is written.
        """
        ...

    async def get(self, name: str) -> JobDefinition | None:
        """The definition called ``name``, or ``None``."""
        ...

    async def list_jobs(self, *, limit: int, offset: int) -> Page[JobDefinition]:
        """Definitions ordered by name, ``limit`` from ``offset``, with the total count."""
        ...

    async def delete(self, name: str) -> bool:
        """Delete the definition called ``name``; return whether there was one.

        The job's runs are kept (their history outlives the definition).
        """
        ...


class RunStore(Protocol):
    """Run records: one per attempt at running a job."""

    async def create(self, run: NewRun) -> Run:
        """Record a new run, ``queued`` since now, and return it.

        The run id is ``run.run_id`` or, if ``None``, a fresh random one (32 hex digits).
        The job need not exist (the store does not tie runs to definitions). Raises
        :class:`~store.jobs.errors.RunAlreadyExists` if a run with that id was recorded.
        """
        ...

    async def get(self, run_id: str) -> Run | None:
        """The run with this id, or ``None``."""
        ...

    async def transition(self, run_id: str, status: RunStatus, **fields: Unpack[RunFields]) -> Run:
        """Move a run to ``status`` (see *Run lifecycle*), stamp the stage's time, set the
        given ``fields`` (others keep their values) and return the run as updated.

        The check and the write are one atomic step: of two racing transitions out of one
        status, only moves that are still legal after the first one apply. Raises
        :class:`~store.jobs.errors.RunNotFound` for an unknown id and
        :class:`~store.jobs.errors.IllegalTransition` (nothing written) when the run is
        final or ``status`` is not after its current one. ``error`` is cut to
        :data:`~store.jobs.models.ERROR_MAX_CHARS` and ``build_log`` to its last
        :data:`~store.jobs.models.BUILD_LOG_MAX_CHARS`; ``artifacts`` replaces the run's list.
        """
        ...

    async def set_artifacts(self, run_id: str, artifacts: Sequence[RunArtifact]) -> Run:
        """Replace the artifacts of a run that has not finished; return the run.

        Artifact names must be unique, sizes non-negative and sha256 64 hex digits
        (lower-cased). To record artifacts with the final status in one step, pass
        ``artifacts=`` to :meth:`transition`. Raises ``RunNotFound``, and
        ``IllegalTransition`` for a final run (final runs never change).
        """
        ...

    async def request_cancel(self, run_id: str) -> Run:
        """Ask for a run to be cancelled: set ``cancel_requested_at`` (once; asking again
        keeps the first time) and return the run.

        This only records the request, durably and visible to every worker; the worker
        executing the run stops it and moves it to ``cancelled``. A final run is returned
        unchanged. Raises ``RunNotFound``.
        """
        ...

    async def list_runs(
        self,
        *,
        job: str | None = None,
        status: RunStatus | None = None,
        limit: int,
        offset: int,
    ) -> Page[Run]:
        """Runs of ``job`` (any, if ``None``) in ``status`` (any, if ``None``), newest
        first (most recently created), ``limit`` from ``offset``, with the total count."""
        ...

    async def latest_for_job(self, job: str) -> Run | None:
        """The most recently created run of ``job``, or ``None``."""
        ...

    async def active_runs(self, job: str | None = None) -> list[Run]:
        """Runs not yet final, of ``job`` (or of every job), oldest first."""
        ...

    async def find_by_task(self, task_id: int) -> list[Run]:
        """The runs recorded for the queue task ``task_id`` (one per attempt), oldest first."""
        ...

    async def schedule_health(self) -> dict[str, ScheduleHealth]:
        """Per schedule name that started runs (of the runs still stored), its
        :class:`~store.jobs.models.ScheduleHealth`."""
        ...

    async def jobs_with_runs(self) -> list[str]:
        """The names of the jobs that have at least one run, in name order (whether or not
        they are still defined: runs outlive their definitions)."""
        ...

    async def prunable_runs(
        self, job: str, *, keep_last: int, keep_for: timedelta, limit: int, offset: int = 0
    ) -> list[str]:
        """The ids of the runs of ``job`` that retention may delete, oldest first, ``limit``
        from ``offset``. Reads only.

        A run may be deleted when all of these hold: it is final; it is not among the
        ``keep_last`` most recently created runs of the job (of any status); it was created
        (``queued_at``) more than ``keep_for`` ago; and it is neither the job's most recent
        ``succeeded`` run nor its most recent failure (``failed`` or ``timed_out``).
        ``keep_last`` below 1 or a negative ``keep_for`` raise ``InvalidJobRecord``.
        """
        ...

    async def delete_runs(self, run_ids: Sequence[str]) -> DeletedRuns:
        """Delete the final runs among ``run_ids`` in one short transaction and return their
        ids and the digests of the blobs they referenced.

        Unknown ids and unfinished runs are skipped (an unfinished run is never deleted).
        More than :data:`~store.jobs.models.DELETE_RUNS_MAX` ids raise ``InvalidJobRecord``.
        The blobs themselves are not the store's: the caller frees those that
        :meth:`referenced_blobs` no longer lists.
        """
        ...

    async def referenced_blobs(self, digests: Collection[str]) -> set[str]:
        """Those of ``digests`` that some run references (its ``output_sha256``, its
        ``source_sha256`` or one of its artifacts), as of now.

        A blob stored for a run that has not recorded it yet is not listed: a caller
        freeing blobs must spare those written recently (see ``store.artifacts``).
        """
        ...
