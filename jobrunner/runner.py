"""The ``job.run`` queue handler: one attempt at running a container job, end to end.

:meth:`JobRunner.submit` records a run (``queued``, attempt 1) and enqueues a ``job.run``
task whose payload names the job and the run; :meth:`JobRunner.handle` is the task's handler.
Each attempt of the task has its own run record (attempt 1 uses the payload's ``runId``; a
retry records a new run with the same ``task_id`` and ``attempt`` = the task's attempt), which
moves ``fetching`` → ``building`` → ``running`` → a final status:

- the definition is loaded and validated again (gone or invalid: failed, permanently);
- the source is fetched into a per-run directory under ``config.work_dir`` (removed at the
  end), verified, and stored in the artifact store as the run's *source artifact*: its SHA256
  is the run's ``source_sha256`` (the git archive of the resolved commit, or the tarball);
  git runs also record ``commit_sha``;
- the build context is checked entry by entry and built, cached by the source digest
  (SHA256 of the commit SHA or tarball SHA256, the context path and the Dockerfile);
- the container runs with the definition's limits; a cancel requested on the run store is
  polled every half second and stops it; the retained output is stored in the artifact store
  (``output_sha256``) and the collected artifacts are recorded on the run.

Outcomes, as the worker sees them: success returns; a verification failure, an invalid or
missing definition or a failing build raises :class:`PermanentFailure` (dead-letter queue, no
retry); infrastructure faults (Docker unreachable, a download that failed) are re-raised and
retried with backoff; a non-zero exit or a timeout raises :class:`JobRunFailed`, retried while
the task has attempts left; a cancelled run returns normally. The final status is written even
when the handler itself is cancelled (worker shutdown).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Unpack

from jobrunner.archive import build_context_file
from jobrunner.config import RunnerConfig
from jobrunner.definition import validate_definition
from jobrunner.engine import (
    LABEL_JOB,
    LABEL_RUN,
    LABEL_SOURCE_DIGEST,
    BuildResult,
    ContainerEngine,
    RunResult,
    RunSpec,
)
from jobrunner.engine import RunStatus as EngineStatus
from jobrunner.errors import (
    InfrastructureError,
    InvalidDefinition,
    JobNotFound,
    JobRunFailed,
    VerificationError,
)
from jobrunner.sources import registry
from store.artifacts import ArtifactStore
from store.errors import PermanentFailure
from store.events.models import EventType, NewEvent, Stream
from store.events.protocol import EventStore
from store.jobs.errors import IllegalTransition, RunAlreadyExists
from store.jobs.models import (
    JobDefinition,
    NewRun,
    Run,
    RunArtifact,
    RunFields,
    RunStatus,
    RunTrigger,
)
from store.jobs.protocol import JobStore, RunStore
from store.queue.handlers import TaskContext
from store.queue.models import NewTask, Task, TaskState
from store.queue.protocol import TaskQueue
from store.queue.retry import RetryPolicy

logger = logging.getLogger(__name__)

HANDLER = "job.run"
"""The queue handler name of a job run."""

CANCEL_POLL_SECONDS = 0.5

INTERRUPTED = "interrupted: the worker that ran it is gone"
"""The error of a run whose worker vanished (found by :meth:`JobRunner.cleanup_orphans`)."""

EVENT_TIMEOUT_SECONDS = 5.0
"""How long a status event may take to append before the run goes on without it."""

OUTPUT_EVENT_BYTES = 8 * 1024
"""The most output one ``RunOutputEmitted`` event carries (cut at a line end if possible)."""

OUTPUT_EVENTS_PER_SECOND = 20.0
"""The most ``RunOutputEmitted`` events per second of one run; output coalesces meanwhile."""

OUTPUT_PENDING_BYTES = 256 * 1024
"""Output waiting for its event beyond this is dropped from the live stream (and counted);
the run's retained output is unaffected."""

OUTPUT_DRAIN_SECONDS = 5.0
"""How long the end of a run waits for its last output events before counting them dropped."""

LABEL_SCOPE = "longshore.scope"
"""Label of every job container: the runner's scope (see :attr:`JobRunner.scope`)."""

_STATUS_EVENTS: Mapping[RunStatus, EventType] = {
    RunStatus.QUEUED: EventType.RUN_QUEUED,
    RunStatus.FETCHING: EventType.RUN_FETCH_STARTED,
    RunStatus.BUILDING: EventType.RUN_BUILD_STARTED,
    RunStatus.RUNNING: EventType.RUN_STARTED,
    RunStatus.SUCCEEDED: EventType.RUN_SUCCEEDED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.TIMED_OUT: EventType.RUN_TIMED_OUT,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
}


class JobRunner:
    """Submits job runs to the queue and executes them as the ``job.run`` handler."""

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
        retry_base_delay: float = 5.0,
        events: EventStore | None = None,
    ) -> None:
        self._queue = queue
        self._jobs = jobs
        self._runs = runs
        self._engine = engine
        self._artifacts = artifacts
        self._config = config
        self._default_queue = default_queue
        self._retry_base_delay = retry_base_delay
        self._events = events
        # Per run: the appends of its status events sent in the background, in order.
        self._event_chains: dict[str, asyncio.Future[None]] = {}
        self._event_tasks: set[asyncio.Future[None]] = set()
        self.scope = hashlib.sha256(str(config.work_dir.resolve()).encode()).hexdigest()[:16]
        """Which containers this runner's orphan sweep may remove: those it labelled with
        the same scope, i.e. made by runners sharing its work directory (one deployment).
        Runners of other stores on the same Docker engine (a second deployment, parallel
        test suites) cannot know which of their runs are alive, so they are left alone."""

    @property
    def config(self) -> RunnerConfig:
        """The settings definitions are checked against (when saved and when run)."""
        return self._config

    @property
    def default_queue(self) -> str:
        """The queue of a job whose definition names none (``WORKER_ADMIN_DEFAULT_QUEUE``)."""
        return self._default_queue

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
        payload = {
            "job": job_name,
            "runId": run_id,
            "trigger": RunTrigger(trigger).value,
            "actor": actor,
            "scheduleName": schedule_name,
        }
        # The task first (its id goes on the run); the handler records the run itself if it
        # gets there before we do.
        result = await self._queue.enqueue(
            NewTask(
                handler=HANDLER,
                payload=payload,
                queue=definition.queue or self._default_queue,
                retry=RetryPolicy(
                    max_attempts=definition.retries + 1, base_delay=self._retry_base_delay
                ),
            )
        )
        task_id = result.task.id
        try:
            run = await self._runs.create(
                NewRun(
                    job=job_name,
                    task_id=task_id,
                    attempt=1,
                    trigger=RunTrigger(trigger),
                    actor=actor,
                    schedule_name=schedule_name,
                    run_id=run_id,
                )
            )
        except RunAlreadyExists:
            pass  # the handler recorded it (and emitted its RunQueued event)
        else:
            await self._emit_status(run)
        return task_id, run_id

    # --- the handler --------------------------------------------------------------------------

    async def handle(self, context: TaskContext) -> None:
        """Execute one attempt of a ``job.run`` task (see the module docstring)."""
        task = context.task
        run = await self._run_for_attempt(task)
        if run.status.is_final:
            return
        if run.attempt > 1:
            await self._end_earlier_attempts(run)
        if run.cancel_requested_at is not None:
            await self._finish(run.run_id, RunStatus.CANCELLED, error="cancelled before start")
            return
        try:
            await self._attempt(run)
        finally:
            self._event_chains.pop(run.run_id, None)  # a final transition that failed

    async def _attempt(self, run: Run) -> None:
        try:
            await self._execute(run)
        except asyncio.CancelledError:
            await self._finish(
                run.run_id, RunStatus.FAILED, error="interrupted: the worker stopped"
            )
            raise
        except (VerificationError, InvalidDefinition) as exc:
            await self._finish(run.run_id, RunStatus.FAILED, error=_describe(exc))
            raise PermanentFailure(_describe(exc)) from exc
        except PermanentFailure as exc:
            await self._finish(run.run_id, RunStatus.FAILED, error=str(exc))
            raise
        except InfrastructureError as exc:
            await self._finish(run.run_id, RunStatus.FAILED, error=_describe(exc))
            raise
        except Exception as exc:
            await self._finish(run.run_id, RunStatus.FAILED, error=_describe(exc))
            raise

    async def _run_for_attempt(self, task: Task) -> Run:
        payload = task.payload
        job = str(payload.get("job", ""))
        attempt = max(task.attempts, 1)
        trigger = RunTrigger(payload.get("trigger") or RunTrigger.API.value)
        actor = payload.get("actor")
        schedule_name = payload.get("scheduleName")
        payload_id = payload.get("runId")
        new = NewRun(
            job=job,
            task_id=task.id,
            attempt=attempt,
            trigger=trigger,
            actor=None if actor is None else str(actor),
            schedule_name=None if schedule_name is None else str(schedule_name),
        )
        if attempt == 1 and isinstance(payload_id, str):
            existing = await self._runs.get(payload_id)
            if existing is None:
                try:
                    return await self._created(_with_id(new, payload_id))
                except RunAlreadyExists:
                    existing = await self._runs.get(payload_id)
            if existing is not None and not existing.status.is_final:
                return existing
        else:
            for earlier in await self._runs.find_by_task(task.id):
                if earlier.attempt == attempt and not earlier.status.is_final:
                    return earlier
        return await self._created(new)

    async def _end_earlier_attempts(self, run: Run) -> None:
        """End the runs of this task's earlier attempts that are not final, and remove their
        containers: the task is leased to this attempt now, so whoever ran them is gone (a
        worker killed mid-run, whose lease expired). Without this they would stay ``running``
        until a restart's :meth:`cleanup_orphans` found them, and with a quick restart (the
        dead worker still registered) never. An engine that cannot be reached is logged: the
        containers go at the next sweep, and this attempt fails on its own if it needs one."""
        if run.task_id is None:
            return
        earlier = [
            other
            for other in await self._runs.find_by_task(run.task_id)
            if other.attempt < run.attempt and not other.status.is_final
        ]
        for other in earlier:
            await self._finish(other.run_id, RunStatus.FAILED, error=INTERRUPTED)
            logger.warning(
                "marked the run of an interrupted attempt failed",
                extra={"run_id": other.run_id, "job": other.job, "status": other.status.value},
            )
        for other in earlier:
            labels = {LABEL_SCOPE: self.scope, LABEL_RUN: other.run_id}
            try:
                removed = await self._engine.cleanup_orphans(set(), only_labels=labels)
            except Exception as exc:
                logger.warning(
                    "could not remove the containers of an interrupted attempt",
                    extra={"run_id": other.run_id, "error": _describe(exc)},
                )
                continue
            if removed:
                logger.info(
                    "removed the containers of an interrupted attempt",
                    extra={"run_id": other.run_id, "containers": removed},
                )

    async def _created(self, new: NewRun) -> Run:
        run = await self._runs.create(new)
        await self._emit_status(run)
        return run

    async def _execute(self, run: Run) -> None:
        definition = await self._jobs.get(run.job)
        if definition is None:
            raise PermanentFailure(f"job {run.job!r} no longer exists")
        definition = validate_definition(definition, self._config)
        cancel = asyncio.Event()
        watcher = asyncio.create_task(self._watch_cancel(run.run_id, cancel))
        run_dir = self._config.work_dir / "runs" / run.run_id
        live: _OutputEvents | None = None
        finished = False
        output_stored: asyncio.Future[str] | None = None
        try:
            await asyncio.to_thread(run_dir.mkdir, parents=True, exist_ok=True)
            await self._transition(run.run_id, RunStatus.FETCHING, background=True)
            source_path, identity, fields = await self._fetch(definition, run_dir)
            if cancel.is_set():
                await self._finish(run.run_id, RunStatus.CANCELLED, **fields)
                return
            stored = await asyncio.to_thread(self._store_file, source_path)
            fields["source_sha256"] = stored
            await self._transition(run.run_id, RunStatus.BUILDING, background=True, **fields)
            built, digest = await self._build(definition, source_path, identity, run_dir, run)
            image: RunFields = {"image_id": built.image_id, "build_log": built.log}
            if cancel.is_set():
                await self._finish(run.run_id, RunStatus.CANCELLED, **image)
                return
            started = await self._transition(run.run_id, RunStatus.RUNNING, **image)
            spec = self._spec(definition, built.image_id, digest, run.run_id)
            if self._events is not None:
                live = _OutputEvents(self._events, started)
            result = await self._engine.run(spec, None if live is None else live.feed, cancel)
            finished = True
            # Stored while the live output drains and the run directory goes.
            output_stored = asyncio.ensure_future(asyncio.to_thread(self._store_output, result))
            output_stored.add_done_callback(_retrieve)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            removal = asyncio.ensure_future(asyncio.to_thread(shutil.rmtree, run_dir, True))
            removal.add_done_callback(_retrieve)
            if live is not None:
                await live.close(drain=finished)
            await removal
        live_data: dict[str, Any] = {}
        if live is not None:
            live_data = {"outputEvents": live.sent, "outputEventsDropped": live.dropped}
        assert output_stored is not None
        await self._record_result(run, result, await output_stored, event_data=live_data)

    async def _fetch(self, definition: JobDefinition, run_dir: Path) -> tuple[Path, str, RunFields]:
        """The verified source tar, the identity of its content and the fields to record."""
        source = registry.get(definition.source)
        fetched = await source.fetch(definition.source_fields, self._config, run_dir)
        return fetched.path, fetched.identity, fetched.fields.copy()

    def _store_file(self, path: Path) -> str:
        with path.open("rb") as source:
            return self._artifacts.put_file(source).sha256

    async def _build(
        self,
        definition: JobDefinition,
        source_path: Path,
        identity: str,
        run_dir: Path,
        run: Run,
    ) -> tuple[BuildResult, str]:
        context = await asyncio.to_thread(
            build_context_file,
            source_path,
            run_dir,
            self._config.archive_limits,
            definition.path,
            dockerfile=definition.dockerfile,
        )
        digest = source_digest(identity, definition.path, definition.dockerfile)
        labels = {LABEL_JOB: definition.name}
        built = await self._engine.build(context.path, definition.dockerfile, digest, labels)
        logger.info(
            "job image ready",
            extra={"job": definition.name, "run_id": run.run_id, "cached": built.cached},
        )
        return built, digest

    def _spec(self, definition: JobDefinition, image: str, digest: str, run_id: str) -> RunSpec:
        labels: Mapping[str, str] = {
            LABEL_JOB: definition.name,
            LABEL_RUN: run_id,
            LABEL_SOURCE_DIGEST: digest,
            LABEL_SCOPE: self.scope,
        }
        return RunSpec(
            image=image,
            command=definition.command or None,
            env=definition.env,
            labels=labels,
            memory_mb=definition.resources.memory_mb,
            cpus=definition.resources.cpus,
            pids_limit=definition.resources.pids_limit,
            network=definition.network,
            timeout_seconds=float(definition.timeout_seconds),
            output_limit=definition.output_bytes or self._config.output_bytes,
            on_output_limit=definition.on_output_limit.value,
            artifacts_path=definition.artifacts_path or None,
        )

    def _store_output(self, result: RunResult) -> str:
        return self._artifacts.put_chunks([result.output]).sha256

    async def _record_result(
        self, run: Run, result: RunResult, output_sha256: str, *, event_data: Mapping[str, Any]
    ) -> None:
        fields: RunFields = {
            "output_bytes": result.output_bytes,
            "output_truncated": result.output_truncated,
            "output_sha256": output_sha256,
            "artifacts": [
                RunArtifact(name=a.name, size_bytes=a.size, sha256=a.sha256)
                for a in result.artifacts
            ],
        }
        if result.exit_code is not None:
            fields["exit_code"] = result.exit_code
        error = result.error
        if result.artifact_problems:
            problems = "; ".join(result.artifact_problems)
            error = f"{error}; artifacts: {problems}" if error else f"artifacts: {problems}"
        if error:
            fields["error"] = error
        status = {
            EngineStatus.SUCCEEDED: RunStatus.SUCCEEDED,
            EngineStatus.FAILED: RunStatus.FAILED,
            EngineStatus.TIMED_OUT: RunStatus.TIMED_OUT,
            EngineStatus.CANCELLED: RunStatus.CANCELLED,
        }[result.status]
        await self._finish(run.run_id, status, event_data=event_data, **fields)
        if status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
            return
        reason = result.error or f"exited with code {result.exit_code}"
        raise JobRunFailed(f"run {run.run_id} of job {run.job!r} {status.value}: {reason}")

    async def _transition(
        self,
        run_id: str,
        status: RunStatus,
        *,
        event_data: Mapping[str, Any] | None = None,
        background: bool = False,
        **fields: Unpack[RunFields],
    ) -> Run:
        """Move the run to ``status`` and emit its event: after the run's earlier status
        events, and with ``background`` without waiting for it (the run goes on meanwhile;
        the next transition without ``background`` waits for it first, so a run's status
        events keep their order and its running and final events come after them)."""
        run = await self._runs.transition(run_id, status, **fields)
        earlier = self._event_chains.pop(run_id, None)
        if background:
            chain = asyncio.ensure_future(self._emit_after(earlier, run, event_data))
            self._event_chains[run_id] = chain
            self._event_tasks.add(chain)
            chain.add_done_callback(self._event_tasks.discard)
            return run
        if earlier is not None:
            await asyncio.shield(earlier)
        await self._emit_status(run, event_data)
        return run

    async def _emit_after(
        self, earlier: asyncio.Future[None] | None, run: Run, extra: Mapping[str, Any] | None
    ) -> None:
        if earlier is not None:
            await earlier
        await self._emit_status(run, extra)

    async def _finish(
        self,
        run_id: str,
        status: RunStatus,
        *,
        event_data: Mapping[str, Any] | None = None,
        **fields: Unpack[RunFields],
    ) -> None:
        """The final transition; shielded so a cancelled handler still records it."""
        try:
            await asyncio.shield(self._transition(run_id, status, event_data=event_data, **fields))
        except IllegalTransition:
            logger.info("run already final", extra={"run_id": run_id, "status": status.value})

    async def _emit_status(self, run: Run, extra: Mapping[str, Any] | None = None) -> None:
        """Append the event of the run's current status. Never raises: an event store that
        fails or is slow (:data:`EVENT_TIMEOUT_SECONDS`) is logged, and the run goes on."""
        if self._events is None:
            return
        data = run_event_data(run)
        data.update(extra or {})
        kind = _STATUS_EVENTS[run.status]
        try:
            # ``NewEvent.run`` would take the ``job`` field for its own argument.
            event = NewEvent(
                stream=Stream.RUNS, key=run.job, type=kind, run_id=run.run_id, data=data
            )
            await asyncio.wait_for(self._events.append(event), EVENT_TIMEOUT_SECONDS)
        except Exception as exc:
            logger.warning(
                "could not append a run event",
                extra={"run_id": run.run_id, "type": kind.value, "error": _describe(exc)},
            )

    async def _watch_cancel(self, run_id: str, cancel: asyncio.Event) -> None:
        while not cancel.is_set():
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            try:
                current = await self._runs.get(run_id)
            except Exception as exc:  # keep polling through a store hiccup
                logger.warning("cancel poll failed", extra={"run_id": run_id, "error": str(exc)})
                continue
            if current is not None and current.cancel_requested_at is not None:
                cancel.set()

    # --- crash recovery -----------------------------------------------------------------------

    async def cleanup_orphans(self) -> list[str]:
        """Recover from a crashed worker; return the ids of the containers removed.

        A run is *owned* while it is not final and its task is running under the lease of
        a registered (live) worker. Runs that are ``fetching``, ``building`` or ``running``
        but not owned are marked failed (:data:`INTERRUPTED`): their worker is gone (the
        task, if retried, records a new run). A ``queued`` run is left alone: its task is
        still waiting to be claimed. Then every container of this runner's :attr:`scope`
        labelled for a run that is not owned is removed. The runs are marked before the
        engine is asked, so an engine that cannot be reached (``EngineUnavailable``,
        raised after) does not keep them open."""
        owned, interrupted = await self._interrupted_runs()
        await self._mark_interrupted(interrupted)
        removed = await self._engine.cleanup_orphans(owned, only_labels={LABEL_SCOPE: self.scope})
        if removed:
            logger.info("removed orphaned job containers", extra={"containers": removed})
        return removed

    async def sweep_interrupted(self) -> list[str]:
        """The periodic part of :meth:`cleanup_orphans`, safe while runs are under way: mark
        the runs no live worker owns (see there) failed and remove *their* containers only;
        return the ids of the containers removed.

        It ends the runs of a worker that died after the last start of this service, once
        its lease expired or it was swept as stale, also when its task has no attempt left
        (dead-lettered, so no retry would end them). Containers of other runs are never
        touched: one started between the look at the runs and the look at the engine would
        otherwise be taken for an orphan."""
        _, interrupted = await self._interrupted_runs()
        await self._mark_interrupted(interrupted)
        removed: list[str] = []
        for run in interrupted:
            labels = {LABEL_SCOPE: self.scope, LABEL_RUN: run.run_id}
            removed.extend(await self._engine.cleanup_orphans(set(), only_labels=labels))
        if removed:
            logger.info("removed orphaned job containers", extra={"containers": removed})
        return removed

    async def _interrupted_runs(self) -> tuple[set[str], list[Run]]:
        """The ids of the runs live workers own, and the unfinished runs no one owns (not
        ``queued``)."""
        live = {record.info.worker_id for record in await self._queue.list_workers()}
        owned: set[str] = set()
        interrupted: list[Run] = []
        for run in await self._runs.active_runs():
            task = None if run.task_id is None else await self._queue.get_task(run.task_id)
            if task is not None and task.state is TaskState.RUNNING and task.lease_owner in live:
                owned.add(run.run_id)
            elif run.status is not RunStatus.QUEUED:
                interrupted.append(run)
        return owned, interrupted

    async def _mark_interrupted(self, interrupted: list[Run]) -> None:
        for run in interrupted:
            await self._finish(run.run_id, RunStatus.FAILED, error=INTERRUPTED)
            logger.warning(
                "marked an interrupted run failed",
                extra={"run_id": run.run_id, "job": run.job, "status": run.status.value},
            )


def run_event_data(run: Run) -> dict[str, Any]:
    """The fields of a run carried by each of its status events (camelCase, as the API)."""
    return {
        "runId": run.run_id,
        "job": run.job,
        "taskId": run.task_id,
        "attempt": run.attempt,
        "trigger": run.trigger.value,
        "actor": run.actor,
        "scheduleName": run.schedule_name,
        "status": run.status.value,
        "queuedAt": _iso(run.queued_at),
        "fetchingAt": _iso(run.fetching_at),
        "buildingAt": _iso(run.building_at),
        "runningAt": _iso(run.running_at),
        "finishedAt": _iso(run.finished_at),
        "exitCode": run.exit_code,
        "error": run.error,
        "commitSha": run.commit_sha,
        "sourceSha256": run.source_sha256,
        "imageId": run.image_id,
        "outputBytes": run.output_bytes,
        "outputTruncated": run.output_truncated,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class _OutputEvents:
    """Streams one run's output as ``RunOutputEmitted`` events without ever slowing it.

    :meth:`feed` (the engine's output callback) only appends to a pending buffer; a
    background task turns it into events of at most :data:`OUTPUT_EVENT_BYTES`, cut after
    the last complete line when there is one, at most :data:`OUTPUT_EVENTS_PER_SECOND` a
    second (output arriving meanwhile coalesces). When the event store is slow the buffer
    fills up to :data:`OUTPUT_PENDING_BYTES`; chunks beyond it are dropped from the live
    stream and counted (``dropped``), as are events whose append failed. Each event has
    ``seq`` (from 0), ``offset`` (of its first byte in the run's output, so a gap shows
    where output was dropped), ``bytes`` and ``text`` (UTF-8, invalid bytes replaced).
    """

    def __init__(self, events: EventStore, run: Run) -> None:
        self._events = events
        self._job = run.job
        self._run_id = run.run_id
        self._pending = bytearray()
        self._offset = 0  # output offset of the first pending byte
        self._seen = 0  # output bytes fed so far
        self._skipping = False  # dropping until the backlog is sent
        self._seq = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._failures_logged = False
        self.sent = 0
        self.dropped = 0
        self._task = asyncio.create_task(self._pump(), name=f"run-output-{run.run_id[:12]}")

    async def feed(self, chunk: bytes) -> None:
        """Queue ``chunk`` for the live stream, or drop it (never waits)."""
        if self._skipping and not self._pending:
            # The backlog is sent: resume after the dropped output (``offset`` shows the gap).
            self._skipping = False
            self._offset = self._seen
            self._decoder.reset()
        self._seen += len(chunk)
        if self._skipping or len(self._pending) + len(chunk) > OUTPUT_PENDING_BYTES:
            self._skipping = True
            self.dropped += 1
            return
        self._pending += chunk
        self._wake.set()

    def _take(self) -> tuple[int, bytes]:
        pending = self._pending
        size = min(len(pending), OUTPUT_EVENT_BYTES)
        if size < len(pending) or not self._closing:
            # Cut after the last complete line in the window, if there is one.
            newline = pending.rfind(b"\n", 0, size)
            if newline >= 0:
                size = newline + 1
        piece = bytes(pending[:size])
        del pending[:size]
        offset = self._offset
        self._offset += size
        return offset, piece

    async def _pump(self) -> None:
        interval = 1.0 / OUTPUT_EVENTS_PER_SECOND
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            began = time.monotonic()
            offset, piece = self._take()
            text = self._decoder.decode(piece, final=self._closing and not self._pending)
            event = NewEvent.run(
                EventType.RUN_OUTPUT_EMITTED,
                job=self._job,
                run_id=self._run_id,
                seq=self._seq,
                offset=offset,
                bytes=len(piece),
                text=text,
            )
            self._seq += 1
            try:
                await self._events.append(event)
                self.sent += 1
            except Exception as exc:
                self.dropped += 1
                if not self._failures_logged:
                    self._failures_logged = True
                    logger.warning(
                        "could not append a run output event; the run goes on",
                        extra={"run_id": self._run_id, "error": _describe(exc)},
                    )
            if not self._closing:
                # The rate limit, cut short by close(): the rest then goes out at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._closed.wait(), max(0.0, interval - (time.monotonic() - began))
                    )

    async def close(self, *, drain: bool) -> None:
        """End the stream: with ``drain``, send what is pending (at most
        :data:`OUTPUT_DRAIN_SECONDS`, without the rate limit), then stop; what is left
        unsent counts as dropped."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        try:
            if drain:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._task), OUTPUT_DRAIN_SECONDS)
        finally:
            if not self._task.done():
                self._task.cancel()
            if self._pending:
                self.dropped += 1
                self._pending.clear()


def source_digest(identity: str, path: str | None, dockerfile: str) -> str:
    """The image cache key: SHA256 of the source identity, context path and Dockerfile."""
    text = "\0".join((identity, path or "", dockerfile))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _with_id(run: NewRun, run_id: str) -> NewRun:
    return NewRun(
        job=run.job,
        task_id=run.task_id,
        attempt=run.attempt,
        trigger=run.trigger,
        actor=run.actor,
        schedule_name=run.schedule_name,
        run_id=run_id,
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark the exception of a future that may end up not awaited as retrieved."""
    if not future.cancelled():
        future.exception()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
