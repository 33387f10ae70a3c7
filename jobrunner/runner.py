"""The job runner: submits job runs to the queue and executes them as the ``job.run`` handler.

:meth:`JobRunner.submit` records a run (``queued``, attempt 1) and enqueues a ``job.run``
task whose payload (:class:`~jobrunner.job_run_task.JobRunPayload`) names the job and the
run; :meth:`JobRunner.handle` is the task's handler. Each attempt of the task has its own
run record (attempt 1 uses the payload's ``runId``; a retry records a new run with the same
``task_id`` and ``attempt`` = the task's attempt), executed by
:class:`~jobrunner.attempt.AttemptPipeline` (fetch → build → run → record).

The parts, one module each: the task and its payload (:mod:`jobrunner.job_run_task`), the
attempt (:mod:`jobrunner.attempt`), run statuses and their events
(:mod:`jobrunner.run_events`), live output (:mod:`jobrunner.output_events`) and crash
recovery (:mod:`jobrunner.recovery`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid

from jobrunner.attempt import AttemptPipeline
from jobrunner.config import RunnerConfig, deployment_scope
from jobrunner.engine import ContainerEngine
from jobrunner.errors import JobNotFound
from jobrunner.infra_wait import INFRA_RETRY_SECONDS, InfraWaits
from jobrunner.job_run_task import RETRY_BASE_DELAY, JobRunPayload, job_run_task
from jobrunner.recovery import CrashRecovery
from jobrunner.run_events import RunRecorder
from store.artifacts import ArtifactStore
from store.events.protocol import EventStore
from store.jobs.errors import RunAlreadyExists
from store.jobs.models import NewRun, Run, RunStatus, RunTrigger
from store.jobs.protocol import JobStore, RunStore
from store.queue.handlers import TaskContext
from store.queue.models import Task
from store.queue.protocol import TaskQueue


class JobRunner:
    """Submits job runs to the queue and executes them as the ``job.run`` handler.

    Outcomes of an attempt, as the worker sees them, are those of
    :meth:`AttemptPipeline.run <jobrunner.attempt.AttemptPipeline.run>`. :meth:`close`
    waits for the run events still being sent in the background.
    """

    def __init__(
        self,
        *,
        queue: TaskQueue,
        jobs: JobStore,
        runs: RunStore,
        engine: ContainerEngine,
        artifacts: ArtifactStore,
        config: RunnerConfig,
        default_queue: str = "default",
        retry_base_delay: float = RETRY_BASE_DELAY,
        events: EventStore | None = None,
        infra_retry_seconds: float = INFRA_RETRY_SECONDS,
    ) -> None:
        self._queue = queue
        self._jobs = jobs
        self._runs = runs
        self._config = config
        self._default_queue = default_queue
        self._retry_base_delay = retry_base_delay
        self.scope = deployment_scope(config.work_dir)
        """Which containers this runner's orphan sweep may remove: those it labelled with
        the same scope, i.e. made by runners sharing its work directory (one deployment).
        Runners of other stores on the same Docker engine (a second deployment, parallel
        test suites) cannot know which of their runs are alive, so they are left alone."""
        self._recorder = RunRecorder(runs, events)
        self.infra_waits = InfraWaits(budget=infra_retry_seconds)
        """How long an attempt may wait for its infrastructure, and what waits now (see
        :mod:`jobrunner.infra_wait`; the metrics read it)."""
        self._attempts = AttemptPipeline(
            jobs=jobs,
            runs=runs,
            engine=engine,
            artifacts=artifacts,
            config=config,
            recorder=self._recorder,
            events=events,
            scope=self.scope,
            waits=self.infra_waits,
        )
        self._recovery = CrashRecovery(
            queue=queue, runs=runs, engine=engine, recorder=self._recorder, scope=self.scope
        )

    @property
    def config(self) -> RunnerConfig:
        """The settings definitions are checked against (when saved and when run)."""
        return self._config

    @property
    def default_queue(self) -> str:
        """The queue of a job whose definition names none (``WORKER_ADMIN_DEFAULT_QUEUE``)."""
        return self._default_queue

    async def close(self) -> None:
        """Wait for the run events still being sent in the background."""
        await self._recorder.close()

    # --- submitting ---------------------------------------------------------------------------

    async def submit(
        self,
        job_name: str,
        *,
        trigger: RunTrigger,
        actor: str | None,
        schedule_name: str | None = None,
    ) -> tuple[int, str]:
        """Record a queued run of ``job_name`` and enqueue the ``job.run`` task that executes
        it; return ``(task_id, run_id)``. Raises :class:`JobNotFound` for an unknown job."""
        definition = await self._jobs.get(job_name)
        if definition is None:
            raise JobNotFound(job_name)
        run_id = uuid.uuid4().hex
        payload = JobRunPayload(
            job=job_name,
            run_id=run_id,
            trigger=RunTrigger(trigger),
            actor=actor,
            schedule_name=schedule_name,
        )
        # The task first (its id goes on the run); the handler records the run itself if it
        # gets there before we do.
        task = job_run_task(
            definition,
            payload,
            default_queue=self._default_queue,
            retry_base_delay=self._retry_base_delay,
        )
        task_id = (await self._queue.enqueue(task)).task.id
        new = _new_run(payload, task_id=task_id, attempt=1)
        with contextlib.suppress(RunAlreadyExists):  # the handler recorded it (and its event)
            await self._recorder.create(dataclasses.replace(new, run_id=run_id))
        return task_id, run_id

    # --- the handler --------------------------------------------------------------------------

    async def handle(self, context: TaskContext) -> None:
        """Execute one attempt of a ``job.run`` task (see the module docstring)."""
        run = await self._run_for_attempt(context.task)
        if run.status.is_final:
            return
        if run.attempt > 1:
            await self._recovery.end_earlier_attempts(run)
        if run.cancel_requested_at is not None:
            await self._recorder.finish(
                run.run_id, RunStatus.CANCELLED, error="cancelled before start"
            )
            return
        try:
            await self._attempts.run(run)
        finally:
            self._recorder.forget(run.run_id)

    async def _run_for_attempt(self, task: Task) -> Run:
        payload = JobRunPayload.from_payload(task.payload)
        attempt = max(task.attempts, 1)
        new = _new_run(payload, task_id=task.id, attempt=attempt)
        if attempt == 1 and payload.run_id is not None:
            existing = await self._runs.get(payload.run_id)
            if existing is None:
                try:
                    return await self._recorder.create(
                        dataclasses.replace(new, run_id=payload.run_id)
                    )
                except RunAlreadyExists:
                    existing = await self._runs.get(payload.run_id)
            if existing is not None and not existing.status.is_final:
                return existing
        else:
            for earlier in await self._runs.find_by_task(task.id):
                if earlier.attempt == attempt and not earlier.status.is_final:
                    return earlier
        return await self._recorder.create(new)

    # --- crash recovery -----------------------------------------------------------------------

    async def cleanup_orphans(self) -> list[str]:
        """When a worker starts: mark every run no live worker owns failed and remove every
        container of this runner's :attr:`scope` whose run is not owned (see
        :class:`~jobrunner.recovery.CrashRecovery`)."""
        return await self._recovery.cleanup_orphans()

    async def sweep_interrupted(self) -> list[str]:
        """Periodically, safe while runs are under way: mark the runs no live worker owns
        failed and remove their containers only (see
        :class:`~jobrunner.recovery.CrashRecovery`)."""
        return await self._recovery.sweep_interrupted()


def _new_run(payload: JobRunPayload, *, task_id: int, attempt: int) -> NewRun:
    """The run of one attempt of the task; the store picks its id."""
    return NewRun(
        job=payload.job,
        task_id=task_id,
        attempt=attempt,
        trigger=payload.trigger,
        actor=payload.actor,
        schedule_name=payload.schedule_name,
    )
