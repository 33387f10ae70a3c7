"""``DockerEngine``: the ``ContainerEngine`` on one Docker engine, and how it supervises a run.

- **Runs** use ``create`` + ``attach`` + ``start``, never ``containers.run`` (which pulls).
  Attaching *before* starting gets every byte, with stdout and stderr merged in the order the
  daemon forwards them, without depending on the log driver (there is none: see
  :func:`~jobrunner.docker_engine.sdk.create_container`).
- **Deadlines are ours**: ``wait(timeout=...)`` is only a socket timeout, so the timeout,
  cancellation and output-limit checks race the exit in the event loop; losing means
  ``stop`` (SIGTERM, grace period, SIGKILL) and finally a forced removal.
- **The container is always removed**: its removal is shielded from the cancellation of
  the run and owned by the engine, so a run cancelled again while removing it still
  removes it; :meth:`DockerEngine.aclose` waits for such removals.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from jobrunner.docker_engine import sdk
from jobrunner.docker_engine.artifact_holders import ArtifactHolders, Holder
from jobrunner.docker_engine.artifacts import ArtifactReader
from jobrunner.docker_engine.build_cgroup import DEFAULT_CGROUP_ROOT
from jobrunner.docker_engine.client import ENGINE_ERRORS, ClosingClient, DockerClients, in_thread
from jobrunner.docker_engine.exit_verdict import exit_code_of, judge_exit
from jobrunner.docker_engine.image_build import ImageBuilder
from jobrunner.docker_engine.images import BuildJournal, EngineImages
from jobrunner.docker_engine.orphans import labelled_run_ids, remove_orphans
from jobrunner.docker_engine.output_pump import OutputPump, consume
from jobrunner.docker_engine.run_files import FilesHolder, RunFiles
from jobrunner.engine import (
    LABEL_RUN,
    LABEL_SCOPE,
    BuildResult,
    BuildSpec,
    CollectedArtifact,
    OutputCallback,
    RunResult,
    RunSpec,
    RunStatus,
)
from jobrunner.errors import EngineUnavailable
from jobrunner.output import OutputBuffer
from store.artifacts import ArtifactStore
from store.background import TaskOwner

logger = logging.getLogger(__name__)

_DRAIN_SECONDS = 10.0  # how long to wait for the rest of the output after the exit


class DockerEngine:
    """Builds and runs job containers on one Docker engine; ``images`` are its images
    (``ImageEngine``, builds journaled in ``build_journal_dir``: ``docker_engine.images``).

    ``base_url`` overrides ``DOCKER_HOST`` (and the TLS settings of the environment, as the
    SDK does); the client is made on first use. Artifacts go to ``artifact_store``.
    ``build_cgroup_root``: where builds get the cgroup of their pids limit (``None``: none;
    ``docker_engine.build_cgroup``). ``artifact_holder_spares`` holders are kept started
    ahead of the runs (``docker_engine.artifact_holders``); :meth:`aclose` removes them."""

    def __init__(
        self,
        artifact_store: ArtifactStore,
        *,
        base_url: str | None = None,
        stop_grace_seconds: float = 5.0,
        tmp_size_mb: int = 64,
        build_log_bytes: int = 64 * 1024,
        build_timeout_seconds: float = 1800.0,
        client_timeout_seconds: float = 60.0,
        build_cgroup_root: Path | None = DEFAULT_CGROUP_ROOT,
        artifact_holder_spares: int = 0,
        build_journal_dir: Path | None = None,
    ) -> None:
        self._clients = DockerClients(base_url=base_url, timeout=client_timeout_seconds)
        journal = BuildJournal(build_journal_dir)
        self.images = EngineImages(self._clients, journal)
        self._grace = stop_grace_seconds
        self._tmp_size_mb = tmp_size_mb
        self._builder = ImageBuilder(
            self._clients,
            log_bytes=build_log_bytes,
            timeout=build_timeout_seconds,
            cgroup_root=build_cgroup_root,
            journal=journal,
        )
        self._artifacts = ArtifactReader(self._clients, artifact_store)
        # What outlives the run that started it: creates, connects and container removals.
        self._tasks = TaskOwner("docker-engine")
        self._holders = ArtifactHolders(self._clients, self._tasks, spares=artifact_holder_spares)
        self._files = RunFiles(self._clients)

    def close(self) -> None:
        """Close the client's connections (the engine can be used again afterwards)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Wait for what runs left under way (the removal of a container whose run was
        cancelled while removing it, spare artifacts holders), then close the client. Takes
        no runs afterwards."""
        await self._tasks.close(cancel=False)
        await self._holders.close()
        self.close()

    async def ping(self) -> None:
        await self._clients.call("answer a ping", lambda api: api.ping())

    async def build(
        self,
        context_tar: Path,
        dockerfile: str,
        digest: str,
        labels: Mapping[str, str],
        *,
        spec: BuildSpec | None = None,
        cancel: asyncio.Event | None = None,
    ) -> BuildResult:
        return await self._builder.build(
            context_tar, dockerfile, digest, labels, spec=spec, cancel=cancel
        )

    async def cached_image(self, digest: str, *, scope: str | None = None) -> str | None:
        return await self._builder.cached(digest, scope)

    # --- run --------------------------------------------------------------------------------

    async def run(
        self,
        spec: RunSpec,
        on_output: OutputCallback | None,
        cancel: asyncio.Event,
    ) -> RunResult:
        call = self._clients.call
        loop = asyncio.get_running_loop()
        buffer = OutputBuffer(spec.output_limit)
        pump = OutputPump(loop)
        stop_waiting = threading.Event()
        limit_passed = asyncio.Event()
        run_tag = spec.labels.get(LABEL_RUN, "")[:12]
        holder: Holder | None = None
        files = await self._files.make(spec)  # the run's files under /run, if any
        try:
            if spec.artifacts_path is not None:
                holder = await self._holders.take(
                    scope=spec.labels.get(LABEL_SCOPE),
                    size_bytes=spec.artifact_limits.max_total_bytes,
                )
        except BaseException:
            await asyncio.shield(self._files.remove(files))
            raise
        volume = None if holder is None else holder.volume
        files_volume = None if files is None else files.volume
        # Owned by the engine, never cancelled: the removal awaits ``create`` however the run
        # ends, and a client made by ``connect`` but not used is closed when it is made.
        create = self._tasks.spawn(
            call(
                "create a container",
                sdk.create_container,
                spec,
                self._tmp_size_mb,
                volume,
                files_volume,
            ),
            name=f"docker-create-{run_tag}",
        )
        # The output stream's own client, made while the container is created.
        connect = self._tasks.spawn(
            call("connect to the engine", lambda _api: self._clients.one_off(None)),
            name=f"docker-connect-{run_tag}",
        )
        container_id: str | None = None
        attach_client: ClosingClient | None = None
        helpers: list[asyncio.Future[Any]] = []
        reusable: Holder | None = None  # the holder, when the run left its volume as new
        async with TaskOwner(f"docker-run {run_tag}") as tasks:
            try:
                container_id = cid = await asyncio.shield(create)
                # Where the artifacts are read: through the holder, or in the container.
                where = (cid, spec.artifacts_path or "")
                if holder is not None:
                    where = (holder.container_id, holder.path)
                # The artifacts directory's stat before the start, alongside the attach.
                baseline = tasks.spawn(
                    self._artifacts.baseline(*where, spec), name=f"docker-baseline-{cid[:12]}"
                )
                helpers.append(baseline)
                attach_client = await connect
                stream = await call(
                    "attach to a container", lambda _api: sdk.attach(attach_client.api, cid)
                )
                pump.start(stream, name=f"docker-output-{container_id[:12]}")
                before = await baseline
                await call("start a container", sdk.start, container_id)
                deadline = loop.time() + spec.timeout_seconds
                exited = in_thread(
                    lambda: sdk.wait_exit(self._clients, cid, stop_waiting),
                    name=f"docker-wait-{cid[:12]}",
                )
                consumer = tasks.spawn(
                    consume(pump, buffer, on_output, spec, limit_passed),
                    name=f"docker-consume-{cid[:12]}",
                )
                cancelled = tasks.spawn(cancel.wait(), name=f"docker-cancel-{cid[:12]}")
                limited = tasks.spawn(limit_passed.wait(), name=f"docker-limit-{cid[:12]}")
                helpers += [exited, consumer, cancelled, limited]

                status, error = await self._supervise(
                    container_id, exited, consumer, cancelled, limited, deadline, spec, cancel
                )
                exit_code = await self._exit_after_stop(container_id, exited)
                # The stopped container's artifacts stat, while the output drains.
                untouched = tasks.spawn(
                    self._artifacts.untouched(*where, before), name=f"docker-stat-{cid[:12]}"
                )
                helpers.append(untouched)
                with suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(consumer), _DRAIN_SECONDS)
                failure = consumer.exception() if consumer.done() else None
                if failure is not None:
                    raise failure  # on_output's own error, now that the container is stopped
                if status is None:
                    status, error = await judge_exit(
                        self._clients, container_id, exit_code, spec, buffer
                    )
                artifacts: tuple[CollectedArtifact, ...] = ()
                problems: tuple[str, ...] = ()
                if spec.artifacts_path is not None and status is not RunStatus.CANCELLED:
                    if not await untouched:
                        artifacts, problems = await self._artifacts.collect(*where, spec)
                    elif holder is not None and self._artifacts.left_clean(spec):
                        reusable = holder
                return RunResult(
                    status=status,
                    exit_code=exit_code,
                    output=buffer.render(),
                    output_bytes=buffer.total_bytes,
                    output_truncated=buffer.truncated,
                    artifacts=artifacts,
                    artifact_problems=problems,
                    error=error,
                    container_id=container_id,
                )
            finally:
                # Nothing is awaited before the removal is under way (the helpers are
                # cancelled here, and awaited when the ``async with`` ends).
                for helper in helpers:
                    helper.cancel()
                pump.close()
                stop_waiting.set()
                if attach_client is not None:
                    attach_client.close()
                else:
                    connect.add_done_callback(_close_connected)  # made (or making) but unused
                cleanup = self._tasks.spawn(
                    self._dispose(create, holder, files, reuse=reusable is not None),
                    name=f"docker-remove-{run_tag}",
                )
                # Shielded: a cancelled run still removes its container before it unwinds.
                await asyncio.shield(cleanup)

    async def _supervise(
        self,
        container_id: str,
        exited: asyncio.Future[int | None],
        consumer: asyncio.Future[None],
        cancelled: asyncio.Future[Any],
        limited: asyncio.Future[Any],
        deadline: float,
        spec: RunSpec,
        cancel: asyncio.Event,
    ) -> tuple[RunStatus | None, str | None]:
        """Wait for the first of: exit, timeout, cancel, output over a ``fail`` limit, or an
        error from ``on_output``. Stop the container unless it exited; return the status
        decided here (``None``: judge by the exit code) and an error text.

        A cancel wins over an exit seen at the same time: when ``cancel`` was already set
        as the exit was observed and the exit code is not 0, the container ended because of
        the cancel (e.g. 143 after a SIGTERM that raced the ``cancelled`` wake-up), so the
        run is ``cancelled``, not a plain failure."""
        loop = asyncio.get_running_loop()
        waiting: set[asyncio.Future[Any]] = {exited, consumer, cancelled, limited}
        status: RunStatus | None = None
        error: str | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                status = RunStatus.TIMED_OUT
                error = f"timed out after {spec.timeout_seconds:g} s"
                break
            done, _ = await asyncio.wait(
                waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if exited in done:
                if (cancelled in done or cancel.is_set()) and exit_code_of(exited) != 0:
                    return RunStatus.CANCELLED, "cancelled while running"
                return None, None
            if cancelled in done:
                status, error = RunStatus.CANCELLED, "cancelled while running"
                break
            if limited in done:
                status = RunStatus.FAILED
                error = f"output exceeded {spec.output_limit} bytes (onOutputLimit=fail)"
                break
            if consumer in done:
                if consumer.exception() is not None:
                    break  # re-raised by ``run`` once the container is stopped
                waiting.discard(consumer)  # output closed early; the process may go on
        logger.info("stopping container", extra={"container_id": container_id, "reason": status})
        await self._clients.call("stop a container", sdk.stop, container_id, self._grace)
        return status, error

    async def _exit_after_stop(
        self, container_id: str, exited: asyncio.Future[int | None]
    ) -> int | None:
        try:
            return await asyncio.wait_for(asyncio.shield(exited), self._grace + 15)
        except TimeoutError:
            await self._clients.call("kill a container", sdk.kill, container_id)
            return await asyncio.wait_for(asyncio.shield(exited), 15)
        except ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"docker engine failed to wait for a container: {exc}") from exc

    async def _dispose(
        self,
        create: asyncio.Future[str],
        holder: Holder | None,
        files: FilesHolder | None,
        *,
        reuse: bool,
    ) -> None:
        """Remove the container, its artifacts volume and holder (a holder left as new:
        kept as a spare) and then its files' holder and volume, however the run ended."""
        try:
            container_id: str | None = await create
        except BaseException:
            container_id = None  # nothing was created
        removal = self._remove(container_id)
        try:
            if holder is None:
                await removal
            else:
                await self._holders.release(holder, removal, reuse=reuse)
            await self._files.remove(files)
        except EngineUnavailable:
            # Left for ``cleanup_orphans``; the run's outcome stands.
            logger.exception("could not remove container", extra={"container_id": container_id})

    async def _remove(self, container_id: str | None) -> None:
        if container_id is not None:
            await self._clients.call("remove a container", sdk.remove, container_id)

    # --- orphans ----------------------------------------------------------------------------

    async def run_containers(self, labels: Mapping[str, str]) -> set[str]:
        return await labelled_run_ids(self._clients, labels)

    async def cleanup_orphans(
        self, owned_run_ids: set[str], *, only_labels: Mapping[str, str] | None = None
    ) -> list[str]:
        return await remove_orphans(
            self._clients,
            owned_run_ids,
            only_labels=only_labels,
            grace=self._grace,
            own_holders=self._holders.mine,
        )


def _close_connected(connect: asyncio.Future[ClosingClient]) -> None:
    """Close the client of a connect whose run ended before it was used."""
    if connect.cancelled():
        return
    if connect.exception() is None:
        connect.result().close()
