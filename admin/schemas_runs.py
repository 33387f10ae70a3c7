"""Bodies of the ``runs`` routes: the run record (SPEC §4) and its artifacts, camelCase on the
wire, converted from the store's :class:`~store.jobs.models.Run`."""

from __future__ import annotations

from typing import Any

from admin.run_errors import shown_error
from admin.schemas import Schema, epoch_ms, rfc3339
from store.jobs.models import Run, RunArtifact


class RunArtifactBody(Schema):
    name: str
    size_bytes: int
    sha256: str

    @classmethod
    def of(cls, artifact: RunArtifact) -> RunArtifactBody:
        return cls(name=artifact.name, size_bytes=artifact.size_bytes, sha256=artifact.sha256)


class RunBody(Schema):
    """A run as listed: every field of the record but the build log.

    ``taskId`` is a string, as task ids are everywhere in this API. Each stage time is an
    RFC 3339 string with its ``...Ms`` twin, ``null`` for a stage not (yet) entered.
    """

    run_id: str
    task_id: str | None
    job: str
    attempt: int
    trigger: str
    actor: str | None
    schedule_name: str | None
    status: str
    finished: bool
    queued_at: str | None
    queued_at_ms: int | None
    fetching_at: str | None
    fetching_at_ms: int | None
    building_at: str | None
    building_at_ms: int | None
    running_at: str | None
    running_at_ms: int | None
    finished_at: str | None
    finished_at_ms: int | None
    updated_at: str | None
    updated_at_ms: int | None
    cancel_requested: bool
    cancel_requested_at: str | None
    cancel_requested_at_ms: int | None
    exit_code: int | None
    error: str | None
    commit_sha: str | None
    source_sha256: str | None
    image_id: str | None
    output_bytes: int
    output_truncated: bool
    output_sha256: str | None
    artifacts: list[RunArtifactBody]
    user: str | None
    """Who the container ran as (``null`` until the run reached ``running``)."""
    params: dict[str, bool | int | str] | None
    """The run's parameter values (``null`` until they are resolved, when it starts)."""

    @classmethod
    def of(cls, run: Run) -> RunBody:
        return cls(**_run_fields(run))


class RunDetail(RunBody):
    """A run on its own: the list fields plus ``buildLog`` (its last 64 KiB) and
    ``statusDetail``."""

    build_log: str
    status_detail: str | None = None
    """What an unfinished run waits for beyond its status, e.g. ``waiting for the engine``
    (from its latest ``RunWaiting`` event, when no status event came after it); ``null``
    otherwise."""

    @classmethod
    def of(cls, run: Run, status_detail: str | None = None) -> RunDetail:
        return cls(**_run_fields(run), build_log=run.build_log, status_detail=status_detail)


def _run_fields(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "task_id": None if run.task_id is None else str(run.task_id),
        "job": run.job,
        "attempt": run.attempt,
        "trigger": run.trigger.value,
        "actor": run.actor,
        "schedule_name": run.schedule_name,
        "status": run.status.value,
        "finished": run.status.is_final,
        "queued_at": rfc3339(run.queued_at),
        "queued_at_ms": epoch_ms(run.queued_at),
        "fetching_at": rfc3339(run.fetching_at),
        "fetching_at_ms": epoch_ms(run.fetching_at),
        "building_at": rfc3339(run.building_at),
        "building_at_ms": epoch_ms(run.building_at),
        "running_at": rfc3339(run.running_at),
        "running_at_ms": epoch_ms(run.running_at),
        "finished_at": rfc3339(run.finished_at),
        "finished_at_ms": epoch_ms(run.finished_at),
        "updated_at": rfc3339(run.updated_at),
        "updated_at_ms": epoch_ms(run.updated_at),
        "cancel_requested": run.cancel_requested_at is not None,
        "cancel_requested_at": rfc3339(run.cancel_requested_at),
        "cancel_requested_at_ms": epoch_ms(run.cancel_requested_at),
        "exit_code": run.exit_code,
        "error": shown_error(run.error),
        "commit_sha": run.commit_sha,
        "source_sha256": run.source_sha256,
        "image_id": run.image_id,
        "output_bytes": run.output_bytes,
        "output_truncated": run.output_truncated,
        "output_sha256": run.output_sha256,
        "artifacts": [RunArtifactBody.of(artifact) for artifact in run.artifacts],
        "user": run.user,
        "params": None if run.params is None else dict(run.params),
    }


class RunList(Schema):
    runs: list[RunBody]
    total: int
    limit: int
    offset: int


class RunOne(Schema):
    run: RunDetail


class RunArtifactList(Schema):
    artifacts: list[RunArtifactBody]
