"""One attempt at running a container job: fetch → build → run → record.

The run moves ``fetching`` → ``building`` → ``running`` → a final status:

- the definition is loaded and validated again (gone or invalid: failed, permanently);
- the source is fetched into a per-run directory under ``config.work_dir`` (removed at the
  end) and verified; its archive is checked entry by entry and written as the build
  context, and only then stored in the artifact store as the run's *source artifact* (so
  bytes that are not a sound archive are never stored nor offered for download): its SHA256
  is the run's ``source_sha256`` (the git archive of the resolved commit, or the tarball);
  git runs also record ``commit_sha``;
- the image is built from the context, cached by the source digest (SHA256 of the commit SHA
  or tarball SHA256, the context path, the Dockerfile and the build policy's settings).
  Only when no image is cached is the Dockerfile checked against the policy
  (:mod:`jobrunner.build_policy`) and the image built, inside the job's sandbox: its
  limits, no network, and the job's deadline and cancel (``timeoutSeconds`` covers the
  build and the run together);
- the container runs with the definition's limits; a cancel requested on the run store is
  polled every half second and stops it; the retained output is stored in the artifact store
  (``output_sha256``) and the collected artifacts are recorded on the run.

How an attempt ends is in :meth:`AttemptPipeline.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jobrunner.archive import build_context_file
from jobrunner.build_policy import check_build_context
from jobrunner.config import DEFAULT_USER, RunnerConfig
from jobrunner.container_start import start_container
from jobrunner.definition import validate_definition
from jobrunner.engine import (
    LABEL_JOB,
    LABEL_SCOPE,
    BuildResult,
    BuildSpec,
    ContainerEngine,
    RunResult,
)
from jobrunner.engine import RunStatus as EngineStatus
from jobrunner.errors import (
    InfrastructureError,
    InvalidDefinition,
    JobRunFailed,
    VerificationError,
    WaitCancelled,
    describe,
)
from jobrunner.infra_wait import DETAILS, InfraWaits, PatientAttempt
from jobrunner.masking import mask_text, masked_artifacts
from jobrunner.output_events import OutputEvents
from jobrunner.run_events import RunRecorder
from jobrunner.run_inputs import gather, record_uses, run_params
from jobrunner.run_spec import run_spec, source_digest
from jobrunner.sources import registry
from store.artifacts import ArtifactStore
from store.background import TaskOwner
from store.errors import PermanentFailure
from store.events.protocol import EventStore
from store.jobs.models import JobDefinition, Run, RunFields, RunStatus
from store.jobs.protocol import JobStore, RunStore
from store.secrets.protocol import SecretStore

logger = logging.getLogger(__name__)

LEASE_LOST = "not started: the task's lease was lost (another attempt settled it)"
"""The error of a run that ended before its container because its attempt lost the lease."""

CANCEL_POLL_SECONDS = 0.5

_RUN_STATUS: Mapping[EngineStatus, RunStatus] = {
    EngineStatus.SUCCEEDED: RunStatus.SUCCEEDED,
    EngineStatus.FAILED: RunStatus.FAILED,
    EngineStatus.TIMED_OUT: RunStatus.TIMED_OUT,
    EngineStatus.CANCELLED: RunStatus.CANCELLED,
}


class AttemptPipeline:
    """Executes one attempt of a run (see the module docstring), recording each status
    through ``recorder``. Containers are labelled with ``scope`` (``longshore.scope``)."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        runs: RunStore,
        engine: ContainerEngine,
        artifacts: ArtifactStore,
        config: RunnerConfig,
        recorder: RunRecorder,
        events: EventStore | None,
        scope: str,
        waits: InfraWaits,
        secrets: SecretStore | None = None,
    ) -> None:
        self._jobs = jobs
        self._runs = runs
        self._engine = engine
        self._artifacts = artifacts
        self._config = config
        self._recorder = recorder
        self._events = events
        self._scope = scope
        self._waits = waits
        self._secrets = secrets

    async def run(
        self,
        run: Run,
        given: Mapping[str, object] | None = None,
        *,
        lease_held: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Execute the attempt of ``run`` and record its final status.

        Success returns; a verification failure, an invalid or missing definition or a
        failing build raises :class:`PermanentFailure` (no retry); infrastructure faults
        (Docker unreachable, a download that failed, a full disk) are waited out on their
        own budget (:mod:`jobrunner.infra_wait`), then re-raised (retried with backoff); a
        non-zero exit or a timeout raises :class:`JobRunFailed`; a cancelled run returns
        normally. The final status is written even when the caller is cancelled. ``given``
        are the parameter values of the run's task (``jobrunner.run_inputs.run_params``).
        When ``lease_held`` says the task's lease is lost before the container starts, the
        run ends ``cancelled`` (:data:`LEASE_LOST`) without starting it."""
        finish = self._recorder.finish
        try:
            await self._execute(run, given, lease_held)
        except WaitCancelled as exc:
            await finish(run.run_id, RunStatus.CANCELLED, error=str(exc))
        except asyncio.CancelledError:
            await finish(run.run_id, RunStatus.FAILED, error="interrupted: the worker stopped")
            raise
        except (VerificationError, InvalidDefinition) as exc:
            await finish(run.run_id, RunStatus.FAILED, error=describe(exc))
            raise PermanentFailure(describe(exc)) from exc
        except PermanentFailure as exc:
            await finish(run.run_id, RunStatus.FAILED, error=str(exc))
            raise
        except InfrastructureError as exc:
            await finish(run.run_id, RunStatus.FAILED, error=describe(exc))
            raise
        except Exception as exc:
            await finish(run.run_id, RunStatus.FAILED, error=describe(exc))
            raise

    async def _execute(
        self,
        run: Run,
        given: Mapping[str, object] | None,
        lease_held: Callable[[], Awaitable[bool]] | None,
    ) -> None:
        definition = await self._jobs.get(run.job)
        if definition is None:
            raise PermanentFailure(f"job {run.job!r} no longer exists")
        definition = validate_definition(definition, self._config)
        values = run_params(definition, run.trigger, given)
        recorder = self._recorder
        short_id = run.run_id[:12]
        cancel = asyncio.Event()

        async def notice(kind: str, fault: BaseException, retry_in: float, waited: float) -> None:
            logger.warning(
                DETAILS[kind],
                extra={"run_id": run.run_id, "job": run.job, "error": describe(fault)},
            )
            await recorder.waiting(run.run_id, DETAILS[kind], fault, retry_in, waited)

        patient = PatientAttempt(self._waits, cancel, notice)
        async with TaskOwner(f"run {run.run_id}") as tasks:
            watcher = tasks.spawn(
                self._watch_cancel(run.run_id, cancel), name=f"run-cancel-poll-{short_id}"
            )
            run_dir = self._config.work_dir / "runs" / run.run_id

            async def fresh_run_dir() -> None:
                await asyncio.to_thread(shutil.rmtree, run_dir, True)
                await asyncio.to_thread(run_dir.mkdir, parents=True, exist_ok=True)

            live: OutputEvents | None = None
            finished = False
            output_stored: asyncio.Task[str] | None = None
            try:
                await asyncio.to_thread(run_dir.mkdir, parents=True, exist_ok=True)
                await recorder.transition(
                    run.run_id, RunStatus.FETCHING, background=True, params=values
                )
                source_path, identity, fields = await patient.call(
                    lambda: self._fetch(definition, run_dir), before_retry=fresh_run_dir
                )
                context = await asyncio.to_thread(
                    build_context_file,
                    source_path,
                    run_dir,
                    self._config.archive_limits,
                    definition.path,
                    dockerfile=definition.dockerfile,
                )
                if cancel.is_set():
                    await recorder.finish(run.run_id, RunStatus.CANCELLED, **fields)
                    return
                stored = await patient.call(
                    lambda: asyncio.to_thread(self._store_file, source_path)
                )
                fields["source_sha256"] = stored
                await recorder.transition(run.run_id, RunStatus.BUILDING, background=True, **fields)
                # ``timeoutSeconds`` covers the build and the run.
                deadline = asyncio.get_running_loop().time() + definition.timeout_seconds
                deadline -= patient.waited  # only waits from here on move the deadline
                built, digest = await patient.call(
                    lambda: self._build(definition, context.path, identity, run, cancel)
                )
                image_id = built.image_id
                remaining = deadline + patient.waited - asyncio.get_running_loop().time()
                if built.stopped is not None or image_id is None or remaining <= 0:
                    await self._build_stopped(run, definition, built)
                    return
                image: RunFields = {"image_id": image_id, "build_log": built.log}
                if cancel.is_set():
                    await recorder.finish(run.run_id, RunStatus.CANCELLED, **image)
                    return
                if lease_held is not None and not await lease_held():
                    lost: RunFields = {**image, "error": LEASE_LOST}
                    await recorder.finish(run.run_id, RunStatus.CANCELLED, **lost)
                    return
                inputs = await gather(definition, values, self._secrets)
                spec = run_spec(
                    definition, image_id, digest, run.run_id, remaining, self._scope, self._config
                )
                spec = dataclasses.replace(
                    spec, env=spec.env + inputs.env, files=inputs.files, mask=inputs.mask
                )
                running: RunFields = {**image, "user": spec.user or DEFAULT_USER}
                started = await recorder.transition(run.run_id, RunStatus.RUNNING, **running)
                await record_uses(self._events, started, inputs.used)
                if self._events is not None:
                    live = OutputEvents(self._events, started)
                feed = None if live is None else live.feed
                result = await patient.call(
                    lambda: start_container(
                        self._engine, self._runs, self._scope, run, spec, feed, cancel
                    )
                )
                finished = True
                # Stored while the live output drains and the run directory goes.
                output_stored = tasks.spawn(
                    patient.call(lambda: asyncio.to_thread(self._store_output, result)),
                    name=f"run-output-{short_id}",
                )
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                removal = tasks.spawn(
                    asyncio.to_thread(shutil.rmtree, run_dir, True), name=f"run-dir-{short_id}"
                )
                if live is not None:
                    await live.close(drain=finished)
                await removal
            assert output_stored is not None
            output_sha256 = await output_stored
        live_data: dict[str, Any] = {}
        if live is not None:
            live_data = {"outputEvents": live.sent, "outputEventsDropped": live.dropped}
        await self._record_result(run, result, output_sha256, event_data=live_data, mask=spec.mask)

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
        context: Path,
        identity: str,
        run: Run,
        cancel: asyncio.Event,
    ) -> tuple[BuildResult, str]:
        """The image of the source: the cached one, or one built after the Dockerfile
        passed the policy (a cached image was checked when it was built, under the same
        policy settings, which are part of the digest)."""
        policy = self._config.build
        digest = source_digest(identity, definition.path, definition.dockerfile, policy)
        cached = await self._engine.cached_image(digest, scope=self._scope)
        if cached is not None:
            return BuildResult(image_id=cached, cached=True, log=""), digest
        plan = await asyncio.to_thread(
            check_build_context,
            context,
            definition.dockerfile,
            allowed_images=policy.base_images,
        )
        resources = definition.resources
        spec = BuildSpec(
            base_images=plan.images,
            pull=policy.pull,
            pull_timeout=policy.pull_timeout,
            memory_mb=resources.memory_mb,
            cpus=resources.cpus,
            pids_limit=resources.pids_limit,
            timeout_seconds=float(definition.timeout_seconds),
        )
        labels = {LABEL_JOB: definition.name, LABEL_SCOPE: self._scope}
        built = await self._engine.build(
            context, definition.dockerfile, digest, labels, spec=spec, cancel=cancel
        )
        logger.info(
            "job image ready" if built.stopped is None else "job image build stopped",
            extra={"job": definition.name, "run_id": run.run_id, "cached": built.cached},
        )
        return built, digest

    async def _build_stopped(self, run: Run, definition: JobDefinition, built: BuildResult) -> None:
        """Record a build that was cancelled (the run is ``cancelled``) or that used up the
        job's time (``timed_out``, retried like a run that timed out)."""
        status = _RUN_STATUS[built.stopped or EngineStatus.TIMED_OUT]
        error = f"timed out after {definition.timeout_seconds} s while building"
        if status is RunStatus.CANCELLED:
            error = built.error or "cancelled while building"
        await self._recorder.finish(run.run_id, status, error=error, build_log=built.log)
        if status is RunStatus.TIMED_OUT:
            raise JobRunFailed(
                f"run {run.run_id} of job {definition.name!r} {status.value}: {error}"
            )

    def _store_output(self, result: RunResult) -> str:
        return self._artifacts.put_chunks([result.output]).sha256

    async def _record_result(
        self,
        run: Run,
        result: RunResult,
        output_sha256: str,
        *,
        event_data: Mapping[str, Any],
        mask: Sequence[bytes],
    ) -> None:
        """Write the run's verdict; its error text and artifact names are masked like its
        output (a name or an engine message may carry a secret value the run was given)."""
        artifacts, hidden = masked_artifacts(result.artifacts, mask)
        fields: RunFields = {
            "output_bytes": result.output_bytes,
            "output_truncated": result.output_truncated,
            "output_sha256": output_sha256,
            "artifacts": artifacts,
        }
        if result.exit_code is not None:
            fields["exit_code"] = result.exit_code
        error = result.error
        if result.artifact_problems or hidden:
            problems = "; ".join([*result.artifact_problems, *hidden])
            error = f"{error}; artifacts: {problems}" if error else f"artifacts: {problems}"
        if error:
            fields["error"] = mask_text(error, mask)
        status = _RUN_STATUS[result.status]
        await self._recorder.finish(run.run_id, status, event_data=event_data, **fields)
        if status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
            return
        reason = mask_text(result.error or f"exited with code {result.exit_code}", mask)
        raise JobRunFailed(f"run {run.run_id} of job {run.job!r} {status.value}: {reason}")

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
