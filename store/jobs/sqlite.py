"""Job definitions and runs on the embedded SQLite database.

Implements :class:`store.jobs.protocol.JobStore` and :class:`store.jobs.protocol.RunStore`;
the semantics live in the protocol's docstrings. Each operation is one short transaction run
in one hop on the database's writer (or reader) thread (see :mod:`store.db.sqlite`); the
SQL is in ``store/sql/sqlite/jobs.sql``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Unpack

from store.db.sqlite import SqliteDatabase
from store.jobs import _checks as checks
from store.jobs import _sqlite_rows as rows
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
from store.queue._sqlite_rows import from_us, to_json
from store.sqlfiles import queries

__all__ = ["SqliteJobStore", "SqliteRunStore"]


def q(name: str) -> str:
    return queries("sqlite", "jobs")[name]


class SqliteJobStore:
    """:class:`~store.jobs.protocol.JobStore` on SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def upsert(self, definition: JobDefinition) -> tuple[JobDefinition, bool]:
        params = rows.definition_params(checks.check_definition(definition), rows.now_us())
        row = await self._db.write(lambda conn: conn.execute(q("upsert_job"), params).fetchone())
        saved = rows.definition_from_row(row)
        return saved, saved.revision == 1

    async def get(self, name: str) -> JobDefinition | None:
        params = {"name": name}
        row = await self._db.read(lambda conn: conn.execute(q("get_job"), params).fetchone())
        return None if row is None else rows.definition_from_row(row)

    async def list_jobs(self, *, limit: int, offset: int) -> Page[JobDefinition]:
        checks.check_page(limit, offset)

        def run(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            found = conn.execute(q("list_jobs"), {"limit": limit, "offset": offset}).fetchall()
            return found, int(conn.execute(q("count_jobs")).fetchone()[0])

        found, total = await self._db.read(run)
        items = [rows.definition_from_row(row) for row in found]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def delete(self, name: str) -> bool:
        params = {"name": name}
        count = await self._db.write(lambda conn: conn.execute(q("delete_job"), params).rowcount)
        return bool(count)


class SqliteRunStore:
    """:class:`~store.jobs.protocol.RunStore` on SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create(self, run: NewRun) -> Run:
        run_id = checks.new_run_id(run)
        params = {
            "run_id": run_id,
            "task_id": run.task_id,
            "job": run.job,
            "attempt": run.attempt,
            "trigger_kind": run.trigger.value,
            "actor": run.actor,
            "schedule_name": run.schedule_name,
            "now": rows.now_us(),
            "params": rows.values_param(run.params),
        }
        row = await self._db.write(lambda conn: conn.execute(q("insert_run"), params).fetchone())
        if row is None:
            raise RunAlreadyExists(run_id)
        return rows.run_from_row(row)

    async def get(self, run_id: str) -> Run | None:
        params = {"run_id": run_id}
        row = await self._db.read(lambda conn: conn.execute(q("get_run"), params).fetchone())
        return None if row is None else rows.run_from_row(row)

    async def transition(self, run_id: str, status: RunStatus, **fields: Unpack[RunFields]) -> Run:
        target = RunStatus(status)
        checked = checks.check_fields(fields)
        params = rows.fields_params(checked)
        params.update(
            run_id=run_id,
            status=target.value,
            final=target.is_final,
            sources=to_json([s.value for s in RunStatus.sources_of(target)]),
            now=rows.now_us(),
        )
        output_sha256 = checked.get("output_sha256")
        updated, current = await self._db.write(
            _update_or_current("transition_run", params, output_sha256=output_sha256)
        )
        if updated is None:
            raise _refusal(run_id, current, target)
        return rows.run_from_row(updated)

    async def set_artifacts(self, run_id: str, artifacts: Sequence[RunArtifact]) -> Run:
        checked = checks.check_artifacts(artifacts)
        params = {
            "run_id": run_id,
            "artifacts": to_json(checks.artifacts_json(checked)),
            "now": rows.now_us(),
        }
        updated, current = await self._db.write(_update_or_current("set_run_artifacts", params))
        if updated is None:
            raise _refusal(run_id, current, None)
        return rows.run_from_row(updated)

    async def request_cancel(self, run_id: str) -> Run:
        params = {"run_id": run_id, "now": rows.now_us()}
        updated, current = await self._db.write(_update_or_current("request_cancel", params))
        row = updated if updated is not None else current
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
        checks.check_page(limit, offset)
        shape = checks.run_listing(job, status)
        params = {
            "job": job,
            "status": None if status is None else RunStatus(status).value,
            "limit": limit,
            "offset": offset,
        }

        def run(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            found = conn.execute(q(f"list_runs{shape}"), params).fetchall()
            return found, int(conn.execute(q(f"count_runs{shape}"), params).fetchone()[0])

        found, total = await self._db.read(run)
        items = [rows.run_from_row(row) for row in found]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def latest_for_job(self, job: str) -> Run | None:
        params = {"job": job}
        row = await self._db.read(lambda conn: conn.execute(q("latest_run"), params).fetchone())
        return None if row is None else rows.run_from_row(row)

    async def active_runs(self, job: str | None = None) -> list[Run]:
        query = q("active_runs" if job is None else "active_runs_of_job")
        params = {"job": job}
        found = await self._db.read(lambda conn: conn.execute(query, params).fetchall())
        return [rows.run_from_row(row) for row in found]

    async def find_by_task(self, task_id: int) -> list[Run]:
        params = {"task_id": task_id}
        found = await self._db.read(lambda conn: conn.execute(q("runs_by_task"), params).fetchall())
        return [rows.run_from_row(row) for row in found]

    async def schedule_health(self) -> dict[str, ScheduleHealth]:
        found = await self._db.read(lambda conn: conn.execute(q("schedule_health")).fetchall())
        return {
            str(row[0]): ScheduleHealth(
                last_success_at=None if row[1] is None else from_us(int(row[1])),
                failures_since_success=int(row[2] or 0),
            )
            for row in found
        }

    async def jobs_with_runs(self) -> list[str]:
        found = await self._db.read(lambda conn: conn.execute(q("jobs_with_runs")).fetchall())
        return [str(row[0]) for row in found]

    async def prunable_runs(
        self, job: str, *, keep_last: int, keep_for: timedelta, limit: int, offset: int = 0
    ) -> list[str]:
        checks.check_retention(keep_last, keep_for)
        checks.check_page(limit, offset)
        params = {
            "job": job,
            "keep_last": keep_last,
            "cutoff": rows.now_us() - keep_for // timedelta(microseconds=1),
            "limit": limit,
            "offset": offset,
        }
        found = await self._db.read(
            lambda conn: conn.execute(q("prunable_runs"), params).fetchall()
        )
        return [str(row[0]) for row in found]

    async def delete_runs(self, run_ids: Sequence[str]) -> DeletedRuns:
        ids = checks.check_run_ids(run_ids)
        if not ids:
            return DeletedRuns()

        def run(conn: sqlite3.Connection) -> DeletedRuns:
            gone = conn.execute(q("delete_runs"), {"run_ids": to_json(ids)}).fetchall()
            seqs = to_json([row["seq"] for row in gone])
            blobs = conn.execute(q("delete_run_blobs"), {"seqs": seqs}).fetchall()
            return DeletedRuns(
                run_ids=tuple(row["run_id"] for row in gone),
                blobs=frozenset(row["sha256"] for row in blobs),
            )

        return await self._db.write(run)

    async def referenced_blobs(self, digests: Collection[str]) -> set[str]:
        params = {"digests": to_json(sorted(set(digests)))}
        found = await self._db.read(
            lambda conn: conn.execute(q("referenced_blobs"), params).fetchall()
        )
        return {str(row[0]) for row in found}


_Outcome = tuple[sqlite3.Row | None, sqlite3.Row | None]


# Migration 003's column, set in the same transaction as the transition that records it.
_SET_OUTPUT_SHA256 = (
    "UPDATE runs SET output_sha256 = :output_sha256 WHERE run_id = :run_id RETURNING *"
)


def _update_or_current(
    query: str, params: dict[str, object], *, output_sha256: str | None = None
) -> Callable[[sqlite3.Connection], _Outcome]:
    """A write transaction running a conditional update; when it matched nothing, the run as
    it is (or ``None``) tells why, read in the same transaction."""

    def run(conn: sqlite3.Connection) -> _Outcome:
        updated = conn.execute(q(query), params).fetchone()
        if updated is not None and output_sha256 is not None:
            extra = {"run_id": params["run_id"], "output_sha256": output_sha256}
            updated = conn.execute(_SET_OUTPUT_SHA256, extra).fetchone()
        if updated is not None:
            return updated, None
        return None, conn.execute(q("get_run"), {"run_id": params["run_id"]}).fetchone()

    return run


def _refusal(
    run_id: str, current: sqlite3.Row | None, target: RunStatus | None
) -> RunNotFound | IllegalTransition:
    if current is None:
        return RunNotFound(run_id)
    return IllegalTransition(run_id, RunStatus(current["status"]), target)
