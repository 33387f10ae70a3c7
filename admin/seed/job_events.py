"""Seed 003's job events: one item per run, in its latest state (``GET /jobs/events`` and
the ``job_events`` snapshot of ``/events`` build them here, so the two cannot differ).

The definition fields (``queue``, ``repo``, ``tag``, ``path``, ``dockerfile``,
``command``, the ``job.*`` metadata) are the job's *current* definition (runs do not copy
it; ``""`` once the job is deleted); ``scheduleSpec`` is the current spec of the schedule
that started the run (``""`` for other runs or a deleted schedule).
"""

from __future__ import annotations

from admin.run_errors import shown_error
from admin.schemas import Schema, epoch_ms, rfc3339
from admin.seed.output_tail import OutputTails
from admin.seed.status import run_status
from jobrunner.sources import registry
from scheduler.manager import ScheduleManager
from store.jobs.models import JobDefinition, Run
from store.jobs.protocol import JobStore, RunStore


class JobEventItem(Schema):
    """One run (seed 003's job event). Every field is a string or a number, never null:
    ``""`` for an unknown string, ``-1`` for an unknown number (``durationMs`` while the
    run goes on, ``exitCode`` before the container exited); ``finishedAt`` and
    ``finishedAtMs`` are absent until the run ends."""

    task_id: str
    run_id: str
    name: str
    job: str
    """Longshore's name for ``name``."""
    status: str
    """Seed 003's vocabulary (see :mod:`admin.seed.status`)."""
    run_status: str
    """Longshore's own: ``queued``, ``fetching``, ``building``, ``running``, ``succeeded``,
    ``failed``, ``timed_out`` or ``cancelled``."""
    queue: str
    repo: str
    tag: str
    path: str
    dockerfile: str
    command: str
    """The command, space-joined."""
    schedule_name: str
    schedule_spec: str
    trigger: str
    actor: str
    attempt: int
    exit_code: int
    queued_at_ms: int
    started_at: str
    started_at_ms: int
    """When a worker began the run (when it was queued, while it waits)."""
    finished_at: str | None = None
    finished_at_ms: int | None = None
    duration_ms: int
    result: str
    """The end of the run's output (at most 240 characters); ``""`` until it is stored."""
    error: str
    metadata: dict[str, str]
    """``job.source``, ``job.tarball_url``, ``job.tarball_path`` (seed 003's keys), and
    ``job.repo``, ``job.tag``, ``run.id``, ``run.attempt``, ``run.trigger``,
    ``run.status``, ``run.commit_sha``, ``run.source_sha256`` when known."""


async def job_event_items(
    *,
    runs: RunStore,
    jobs: JobStore | None,
    schedules: ScheduleManager | None,
    tails: OutputTails,
    name: str | None,
    limit: int,
) -> list[JobEventItem]:
    """The newest ``limit`` runs of job ``name`` (of every job without it), newest first."""
    page = await runs.list_runs(job=name, limit=limit, offset=0)
    definitions: dict[str, JobDefinition | None] = {}
    specs: dict[str, str] = {}
    items = []
    for run in page.items:
        if run.job not in definitions:
            definitions[run.job] = None if jobs is None else await jobs.get(run.job)
        schedule = run.schedule_name
        if schedule and schedule not in specs:
            found = None if schedules is None else await schedules.schedule(schedule)
            specs[schedule] = "" if found is None else found.spec
        items.append(
            job_event_item(
                run,
                definitions[run.job],
                schedule_spec=specs.get(schedule or "", ""),
                result=await tails.tail(run.output_sha256),
            )
        )
    return items


def job_event_item(
    run: Run, definition: JobDefinition | None, *, schedule_spec: str, result: str
) -> JobEventItem:
    """The item of ``run`` (see :class:`JobEventItem`)."""
    started = run.fetching_at or run.building_at or run.running_at or run.queued_at
    started_ms = epoch_ms(started) or 0
    finished_ms = epoch_ms(run.finished_at)
    source: dict[str, str | None] = {}
    if definition is not None:
        source = registry.to_api(definition.source_fields)
    status = run_status(run)
    return JobEventItem(
        task_id="" if run.task_id is None else str(run.task_id),
        run_id=run.run_id,
        name=run.job,
        job=run.job,
        status=status.value,
        run_status=run.status.value,
        queue="" if definition is None else definition.queue,
        repo=source.get("repo") or "",
        tag=source.get("tag") or "",
        path="" if definition is None else definition.path or "",
        dockerfile="" if definition is None else definition.dockerfile,
        command="" if definition is None else " ".join(definition.command),
        schedule_name=run.schedule_name or "",
        schedule_spec=schedule_spec,
        trigger=run.trigger.value,
        actor=run.actor or "",
        attempt=run.attempt,
        exit_code=-1 if run.exit_code is None else run.exit_code,
        queued_at_ms=epoch_ms(run.queued_at) or 0,
        started_at=rfc3339(started) or "",
        started_at_ms=started_ms,
        finished_at=rfc3339(run.finished_at),
        finished_at_ms=finished_ms,
        duration_ms=-1 if finished_ms is None else max(0, finished_ms - started_ms),
        result=result,
        error=shown_error(run.error) or "",
        metadata=_metadata(run, definition, source),
    )


def _metadata(
    run: Run, definition: JobDefinition | None, source: dict[str, str | None]
) -> dict[str, str]:
    metadata = {
        "job.source": "" if definition is None else definition.source,
        "job.tarball_url": source.get("tarballUrl") or "",
        "job.tarball_path": source.get("tarballPath") or "",
        "run.id": run.run_id,
        "run.attempt": str(run.attempt),
        "run.trigger": run.trigger.value,
        "run.status": run.status.value,
    }
    optional = {
        "job.repo": source.get("repo"),
        "job.tag": source.get("tag"),
        "run.commit_sha": run.commit_sha,
        "run.source_sha256": run.source_sha256,
    }
    metadata.update({key: value for key, value in optional.items() if value})
    return metadata


class JobEventList(Schema):
    events: list[JobEventItem]
    """Newest first; an unfinished run's item has no ``finishedAt`` / ``finishedAtMs``."""
