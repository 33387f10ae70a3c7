"""Job definitions and runs stored in PostgreSQL.

Implements :class:`store.jobs.protocol.JobStore` and :class:`store.jobs.protocol.RunStore`;
the semantics live in the protocol's docstrings. Every write is one statement whose
condition is checked where it writes (``ON CONFLICT``, ``WHERE status = ANY (...)``), so no
explicit transaction is needed; the SQL is in ``store/sql/postgres/jobs.sql``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Unpack

from store.db.postgres import PostgresDatabase, Row
from store.jobs import _checks as checks
from store.jobs import _pg_rows as rows
from store.jobs.errors import IllegalTransition, RunAlreadyExists, RunNotFound
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
from store.sqlfiles import queries

# Migration 003's column, set in the same transaction as the transition that records it.
_SET_OUTPUT_SHA256 = "UPDATE runs SET output_sha256 = $2 WHERE run_id = $1 RETURNING *"

__all__ = ["PostgresJobStore", "PostgresRunStore"]


class PostgresJobStore:
    """:class:`~store.jobs.protocol.JobStore` in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._sql = queries("postgres", "jobs")

    async def upsert(self, definition: JobDefinition) -> tuple[JobDefinition, bool]:
        """See :meth:`JobStore.upsert`."""
        args = rows.definition_args(checks.check_definition(definition))
        row = await self._db.fetchrow(self._sql["upsert_job"], *args)
        assert row is not None
        saved = rows.definition_from_row(row)
        return saved, saved.revision == 1

    async def get(self, name: str) -> JobDefinition | None:
        """See :meth:`JobStore.get`."""
        row = await self._db.fetchrow(self._sql["get_job"], name)
        return None if row is None else rows.definition_from_row(row)

    async def list_jobs(self, *, limit: int, offset: int) -> Page[JobDefinition]:
        """See :meth:`JobStore.list_jobs`."""
        checks.check_page(limit, offset)
        async with (
            self._db.connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            found = await connection.fetch(self._sql["list_jobs"], limit, offset)
            total = await connection.fetchval(self._sql["count_jobs"])
        items = [rows.definition_from_row(row) for row in found]
        return Page(items=items, total=int(total), limit=limit, offset=offset)

    async def delete(self, name: str) -> bool:
        """See :meth:`JobStore.delete`."""
        return await self._db.fetchrow(self._sql["delete_job"], name) is not None


class PostgresRunStore:
    """:class:`~store.jobs.protocol.RunStore` in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._sql = queries("postgres", "jobs")

    async def create(self, run: NewRun) -> Run:
        """See :meth:`RunStore.create`."""
        run_id = checks.new_run_id(run)
        row = await self._db.fetchrow(
            self._sql["insert_run"],
            run_id,
            run.task_id,
            run.job,
            run.attempt,
            run.trigger.value,
            run.actor,
            run.schedule_name,
            rows.values_arg(run.params),
        )
        if row is None:
            raise RunAlreadyExists(run_id)
        return rows.run_from_row(row)

    async def get(self, run_id: str) -> Run | None:
        """See :meth:`RunStore.get`."""
        row = await self._db.fetchrow(self._sql["get_run"], run_id)
        return None if row is None else rows.run_from_row(row)

    async def transition(self, run_id: str, status: RunStatus, **fields: Unpack[RunFields]) -> Run:
        """See :meth:`RunStore.transition`."""
        target = RunStatus(status)
        checked = checks.check_fields(fields)
        args = rows.fields_args(checked)
        sources = [s.value for s in RunStatus.sources_of(target)]
        output_sha256 = checked.get("output_sha256")
        async with self._db.connection() as connection, connection.transaction():
            row = await connection.fetchrow(
                self._sql["transition_run"], run_id, target.value, sources, target.is_final, *args
            )
            if row is not None and output_sha256 is not None:
                row = await connection.fetchrow(_SET_OUTPUT_SHA256, run_id, output_sha256)
        if row is None:
            raise await self._refusal(run_id, target)
        return rows.run_from_row(row)

    async def set_artifacts(self, run_id: str, artifacts: Sequence[RunArtifact]) -> Run:
        """See :meth:`RunStore.set_artifacts`."""
        checked = checks.check_artifacts(artifacts)
        row = await self._db.fetchrow(
            self._sql["set_run_artifacts"], run_id, rows.artifacts_arg(checked)
        )
        if row is None:
            raise await self._refusal(run_id, None)
        return rows.run_from_row(row)

    async def request_cancel(self, run_id: str) -> Run:
        """See :meth:`RunStore.request_cancel`."""
        row: Row | None = await self._db.fetchrow(self._sql["request_cancel"], run_id)
        if row is None:
            row = await self._db.fetchrow(self._sql["get_run"], run_id)
        if row is None:
            raise RunNotFound(run_id)
        return rows.run_from_row(row)

    async def list_runs(
        self,
        *,
        job: str | None = None,
        status: RunStatus | None = None,
        limit: int,
        offset: int,
    ) -> Page[Run]:
        """See :meth:`RunStore.list_runs`."""
        checks.check_page(limit, offset)
        shape = checks.run_listing(job, status)
        filters = [job] if job is not None else []
        if status is not None:
            filters.append(RunStatus(status).value)
        async with (
            self._db.connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            found = await connection.fetch(self._sql[f"list_runs{shape}"], *filters, limit, offset)
            total = await connection.fetchval(self._sql[f"count_runs{shape}"], *filters)
        items = [rows.run_from_row(row) for row in found]
        return Page(items=items, total=int(total), limit=limit, offset=offset)

    async def latest_for_job(self, job: str) -> Run | None:
        """See :meth:`RunStore.latest_for_job`."""
        row = await self._db.fetchrow(self._sql["latest_run"], job)
        return None if row is None else rows.run_from_row(row)

    async def active_runs(self, job: str | None = None) -> list[Run]:
        """See :meth:`RunStore.active_runs`."""
        if job is None:
            found = await self._db.fetch(self._sql["active_runs"])
        else:
            found = await self._db.fetch(self._sql["active_runs_of_job"], job)
        return [rows.run_from_row(row) for row in found]

    async def find_by_task(self, task_id: int) -> list[Run]:
        """See :meth:`RunStore.find_by_task`."""
        found = await self._db.fetch(self._sql["runs_by_task"], task_id)
        return [rows.run_from_row(row) for row in found]

    async def schedule_health(self) -> dict[str, ScheduleHealth]:
        """See :meth:`RunStore.schedule_health`."""
        return {
            str(row["schedule_name"]): ScheduleHealth(
                last_success_at=row["last_success_at"],
                failures_since_success=int(row["failures_since"] or 0),
            )
            for row in await self._db.fetch(self._sql["schedule_health"])
        }

    async def jobs_with_runs(self) -> list[str]:
        """See :meth:`RunStore.jobs_with_runs`."""
        return [str(row["job"]) for row in await self._db.fetch(self._sql["jobs_with_runs"])]

    async def prunable_runs(
        self, job: str, *, keep_last: int, keep_for: timedelta, limit: int, offset: int = 0
    ) -> list[str]:
        """See :meth:`RunStore.prunable_runs`."""
        checks.check_retention(keep_last, keep_for)
        checks.check_page(limit, offset)
        found = await self._db.fetch(
            self._sql["prunable_runs"], job, keep_last, keep_for, limit, offset
        )
        return [str(row["run_id"]) for row in found]

    async def delete_runs(self, run_ids: Sequence[str]) -> DeletedRuns:
        """See :meth:`RunStore.delete_runs`."""
        ids = checks.check_run_ids(run_ids)
        if not ids:
            return DeletedRuns()
        row = await self._db.fetchrow(self._sql["delete_runs"], ids)
        assert row is not None
        return DeletedRuns(run_ids=tuple(row["run_ids"]), blobs=frozenset(row["digests"]))

    async def referenced_blobs(self, digests: Collection[str]) -> set[str]:
        """See :meth:`RunStore.referenced_blobs`."""
        found = await self._db.fetch(self._sql["referenced_blobs"], sorted(set(digests)))
        return {str(row["sha256"]) for row in found}

    async def _refusal(self, run_id: str, target: RunStatus | None) -> Exception:
        """Why a conditional update matched nothing: no such run, or its status forbids it
        (read after the fact, for the message only)."""
        status = await self._db.fetchval(self._sql["run_status"], run_id)
        if status is None:
            return RunNotFound(run_id)
        return IllegalTransition(run_id, RunStatus(status), target)
