"""The ``job.run`` task: what its payload carries and how the task is made.

Two places enqueue it: :meth:`jobrunner.runner.JobRunner.submit` (API "run now", a
dead-letter replay), which records the run first and names it in the payload (``runId``),
and a schedule's job factory (``service.job_schedules``), whose payload names no run: the
handler records one when the task first runs. Both build the task with
:func:`job_run_task`, so a job's queue and retry policy are decided in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from store.jobs.models import JobDefinition, RunTrigger
from store.queue.models import KeyMode, NewTask
from store.queue.retry import RetryPolicy

HANDLER = "job.run"
"""The queue handler name of a job run."""

RETRY_BASE_DELAY = 5.0
"""The first retry delay of a failed job run, in seconds (it grows exponentially)."""


@dataclass(frozen=True, kw_only=True)
class JobRunPayload:
    """The payload of a ``job.run`` task: the job, who asked for the run and why.

    ``run_id`` is the run recorded when the task was enqueued (attempt 1), or ``None`` when
    the handler is to record it (a schedule's task).
    """

    job: str
    trigger: RunTrigger
    actor: str | None = None
    schedule_name: str | None = None
    run_id: str | None = None
    params: Mapping[str, Any] | None = None
    """Parameter values given: a schedule's (a scheduled run) or a manual run's overrides."""

    def to_payload(self) -> dict[str, Any]:
        """The task payload (camelCase); ``runId`` only when there is one."""
        payload: dict[str, Any] = {"job": self.job}
        if self.run_id is not None:
            payload["runId"] = self.run_id
        payload.update(
            trigger=self.trigger.value, actor=self.actor, scheduleName=self.schedule_name
        )
        if self.params:
            payload["params"] = dict(self.params)
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> JobRunPayload:
        """Read a task payload; a missing trigger reads as ``api``. Raises ``ValueError``
        for a trigger that is not a :class:`RunTrigger`."""
        actor = payload.get("actor")
        schedule_name = payload.get("scheduleName")
        run_id = payload.get("runId")
        params = payload.get("params")
        return cls(
            job=str(payload.get("job", "")),
            trigger=RunTrigger(payload.get("trigger") or RunTrigger.API.value),
            actor=None if actor is None else str(actor),
            schedule_name=None if schedule_name is None else str(schedule_name),
            run_id=run_id if isinstance(run_id, str) else None,
            params=dict(params) if isinstance(params, Mapping) else None,
        )


def job_run_task(
    definition: JobDefinition,
    payload: JobRunPayload,
    *,
    default_queue: str,
    retry_base_delay: float = RETRY_BASE_DELAY,
    key: str | None = None,
) -> NewTask:
    """The ``job.run`` task of one run of ``definition``: on the job's queue (else
    ``default_queue``), ``retries + 1`` attempts with exponential backoff from
    ``retry_base_delay``. A ``key`` (a schedule's firing) deduplicates: a second enqueue of
    the same key returns the first task."""
    return NewTask(
        handler=HANDLER,
        payload=payload.to_payload(),
        queue=definition.queue or default_queue,
        retry=RetryPolicy(max_attempts=definition.retries + 1, base_delay=retry_base_delay),
        key=key,
        key_mode=KeyMode.REPLACE if key is None else KeyMode.DEDUPE,
    )
