"""The job runner: submits job runs to the queue and executes them as the ``job.run`` handler.

:meth:`JobRunner.submit` records a run (``queued``, attempt 1) and enqueues a ``job.run``
task whose payload (:class:`~jobrunner.job_run_task.JobRunPayload`) names the job and the
run; :meth:`JobRunner.handle` is the task's handler. Each attempt of the task has its own
run record (attempt 1 uses the payload's ``runId``; a retry, a re-run after a hand-back or a
replay records a new run with the same ``task_id``, numbered as in
:meth:`JobRunner._run_for_attempt`), executed by
:class:`~jobrunner.attempt.AttemptPipeline` (fetch → build → run → record).

The parts, one module each: the task and its payload (:mod:`jobrunner.job_run_task`), the
attempt (:mod:`jobrunner.attempt`), run statuses and their events
(:mod:`jobrunner.run_events`), live output (:mod:`jobrunner.output_events`) and crash
recovery (:mod:`jobrunner.recovery`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping

from jobrunner.attempt import AttemptPipeline
from jobrunner.config import RunnerConfig, deployment_scope
from jobrunner.engine import ContainerEngine
from jobrunner.errors import JobNotFound
from jobrunner.infra_wait import INFRA_RETRY_SECONDS, InfraWaits
from jobrunner.job_run_task import RETRY_BASE_DELAY, JobRunPayload, job_run_task
from jobrunner.recovery import CrashRecovery
from jobrunner.run_events import RunRecorder
from jobrunner.run_inputs import run_params
from store.artifacts import ArtifactStore
from store.events.protocol import EventStore
from store.jobs.errors import RunAlreadyExists
from store.jobs.models import NewRun, Run, RunStatus, RunTrigger
from store.jobs.protocol import JobStore, RunStore
from store.queue.handlers import TaskContext
from store.queue.models import LateOutcome, Task, TaskState
from store.queue.protocol import TaskQueue
from store.secrets.protocol import SecretStore

logger = logging.getLogger(__name__)

CLAIMS_REMEMBERED = 4096
"""How many recent attempts the runner remembers the run of, for a late result of theirs."""


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
        secrets: SecretStore | None = None,
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
            secrets=secrets,
        )
        self._secrets = secrets
        self._recovery = CrashRecovery(
            queue=queue, runs=runs, engine=engine, recorder=self._recorder, scope=self.scope
        )
        # (task id, attempt as claimed) -> the run that attempt executed.
        self._claims: OrderedDict[tuple[int, int], str] = OrderedDict()

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
        params: Mapping[str, object] | None = None,
    ) -> tuple[int, str]:
        """Record a queued run of ``job_name`` and enqueue the ``job.run`` task that executes
        it; return ``(task_id, run_id)``. Raises :class:`JobNotFound` for an unknown job
        and ``InvalidParameter`` when ``params`` (a manual run's overrides) break the job's
        declarations (nothing is enqueued); the run records the resolved values."""
        definition = await self._jobs.get(job_name)
        if definition is None:
            raise JobNotFound(job_name)
        values = run_params(definition, RunTrigger(trigger), params)
        run_id = uuid.uuid4().hex
        payload = JobRunPayload(
            job=job_name,
            run_id=run_id,
            trigger=RunTrigger(trigger),
            actor=actor,
            schedule_name=schedule_name,
            params=dict(params) if params else None,
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
            await self._recorder.create(dataclasses.replace(new, run_id=run_id, params=values))
        return task_id, run_id

    # --- the handler --------------------------------------------------------------------------

    async def handle(self, context: TaskContext) -> None:
        """Execute one attempt of a ``job.run`` task (see the module docstring)."""
        run = await self._run_for_attempt(context.task)
        self._claims[(context.task.id, context.task.attempts)] = run.run_id
        while len(self._claims) > CLAIMS_REMEMBERED:
            self._claims.popitem(last=False)
        if run.status.is_final:
            return
        if run.attempt > 1:
            await self._recovery.end_earlier_attempts(run)
        if run.cancel_requested_at is not None:
            await self._recorder.finish(
                run.run_id, RunStatus.CANCELLED, error="cancelled before start"
            )
            return
        given = JobRunPayload.from_payload(context.task.payload).params
        try:
            await self._attempts.run(run, given, lease_held=lambda: self._lease_held(context))
        finally:
            self._recorder.forget(run.run_id)

    async def _lease_held(self, context: TaskContext) -> bool:
        """Whether the attempt of ``context`` still holds its task's lease (a container is
        started only then: a task settled by another attempt's late result is not re-run)."""
        task = await self._queue.get_task(context.task.id)
        return (
            task is not None
            and task.state is TaskState.RUNNING
            and task.lease_owner == context.worker_id
            and task.attempts == context.task.attempts
        )

    async def late_result(self, context: TaskContext, outcome: LateOutcome) -> None:
        """The ``job.run`` late-result hook: record on the attempt's run (``RunLateResult``)
        that its success was written after its lease lapsed, and what that did."""
        task = context.task
        run_id = self._claims.pop((task.id, task.attempts), None)
        run = None if run_id is None else await self._runs.get(run_id)
        if run is None:
            logger.warning("late result of a run no longer known", extra={"task_id": task.id})
            return
        data = {"lateResult": outcome.value, "worker": context.worker_id}
        await self._recorder.late_result(run, data)

    async def _run_for_attempt(self, task: Task) -> Run:
        """The run of this execution of ``task``: its ``queued`` run when one waits for it,
        else a new one. Executions are numbered in order: a task handed back at shutdown
        (its attempt not counted by the queue) is re-run as the next attempt all the same.
        A replayed task's runs are ``trigger: replay`` by the replaying actor, numbered
        afresh from the replay on (which reset its attempts)."""
        payload = JobRunPayload.from_payload(task.payload)
        earlier = await self._runs.find_by_task(task.id)
        trigger, actor = payload.trigger, payload.actor
        replayed = task.replay_count > 0
        if replayed:
            trigger, actor = RunTrigger.REPLAY, task.replayed_by
            since = task.replayed_at
            earlier = [
                r
                for r in earlier
                if r.trigger is RunTrigger.REPLAY and (since is None or r.queued_at >= since)
            ]
        started = [r.attempt + 1 for r in earlier if r.status is not RunStatus.QUEUED]
        attempt = max([task.attempts, 1, *started])
        for run in earlier:
            if run.attempt == attempt and run.status is RunStatus.QUEUED:
                return run
        new = _new_run(payload, task_id=task.id, attempt=attempt, trigger=trigger, actor=actor)
        if attempt == 1 and not replayed and payload.run_id is not None:
            # Recorded by ``submit``, unless this handler got there first.
            try:
                return await self._recorder.create(dataclasses.replace(new, run_id=payload.run_id))
            except RunAlreadyExists:
                existing = await self._runs.get(payload.run_id)
            if existing is not None and not existing.status.is_final:
                return existing
            new = dataclasses.replace(new, attempt=2)
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


def _new_run(
    payload: JobRunPayload,
    *,
    task_id: int,
    attempt: int,
    trigger: RunTrigger | None = None,
    actor: str | None = None,
) -> NewRun:
    """The run of one attempt of the task; the store picks its id. ``trigger`` and ``actor``
    default to the payload's."""
    return NewRun(
        job=payload.job,
        task_id=task_id,
        attempt=attempt,
        trigger=payload.trigger if trigger is None else trigger,
        actor=payload.actor if trigger is None else actor,
        schedule_name=payload.schedule_name,
    )
