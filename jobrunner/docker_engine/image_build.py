"""Building job images, cached by source digest, inside the job's sandbox.

A build executes the source (its ``RUN`` steps), so it gets what a run gets
(``ContainerEngine.build``'s contract):

- its base images are made sure of first (:mod:`~jobrunner.docker_engine.base_images`:
  present or refused, never another deployment's);
- every ``RUN`` step has the job's memory and CPU limits, network ``none`` and, where the
  host allows it, the job's pids limit (:mod:`~jobrunner.docker_engine.build_cgroup`);
- it is stopped at its deadline or when ``cancel`` is set: the build's connection is shut
  down, on which the engine kills and removes the container of the running step; what is
  left of the build (that container, if the engine was slow, and the images of the steps
  that finished) is removed. A build that failed is cleaned up the same way.

The build streams on a thread of its own (:mod:`~jobrunner.docker_engine.build_stream`),
keeping only the log's tail. An image labelled with the source digest (and the scope, when
the labels give one) is reused without building.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped, unused-ignore]

from jobrunner.docker_engine.base_images import BaseImages
from jobrunner.docker_engine.build_cgroup import BuildCgroups
from jobrunner.docker_engine.build_stream import (
    BuildLimits,
    BuildProgress,
    LogTail,
    describe_failure,
    made_since,
    stream_build,
)
from jobrunner.docker_engine.client import ENGINE_ERRORS, ClosingClient, DockerClients, in_thread
from jobrunner.docker_engine.images import BuildJournal
from jobrunner.docker_engine.sdk import find_image, image_if_labelled
from jobrunner.engine import LABEL_SCOPE, LABEL_SOURCE_DIGEST, BuildResult, BuildSpec, RunStatus
from jobrunner.errors import BuildFailed, EngineUnavailable
from store.background import TaskOwner

logger = logging.getLogger(__name__)

_LEFTOVER_WAIT_SECONDS = 1.5  # how long the engine may take to remove a stopped step itself
_THREAD_WAIT_SECONDS = 5.0


class ImageBuilder:
    """Builds the image of a source once, and finds it again by its digest label
    (``ContainerEngine.build``'s contract)."""

    def __init__(
        self,
        clients: DockerClients,
        *,
        log_bytes: int,
        timeout: float,
        cgroup_root: Path | None = None,
        journal: BuildJournal | None = None,
    ) -> None:
        self._clients = clients
        self._journal = journal or BuildJournal(None)
        self._log_bytes = log_bytes
        self._timeout = timeout
        self._bases = BaseImages(clients)
        self._cgroups = BuildCgroups(cgroup_root)
        self._digest_locks: dict[str, asyncio.Lock] = {}
        # (source digest, scope) -> image id seen with those labels
        self._images: dict[tuple[str, str | None], str] = {}

    async def cached(self, digest: str, scope: str | None) -> str | None:
        """The image labelled with ``digest`` (and ``scope``, when given), if any."""
        # Listing by label scans every image (30 ms with ~350 images here); an image id
        # seen before is checked with one inspect (~1 ms) that it still carries the labels.
        call = self._clients.call
        known = self._images.get((digest, scope))
        existing = None
        if known is not None:
            existing = await call("inspect an image", image_if_labelled, known, digest, scope)
        if existing is None:
            existing = await call("list images", find_image, digest, scope)
        if existing is not None:
            self._images[(digest, scope)] = existing
        return existing

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
        spec = spec or BuildSpec(timeout_seconds=self._timeout)
        scope = labels.get(LABEL_SCOPE)
        # Two runs of one new source in this process build once; the second finds the image.
        lock = self._digest_locks.setdefault(digest, asyncio.Lock())
        async with lock:
            existing = await self.cached(digest, scope)
            if existing is not None:
                return BuildResult(image_id=existing, cached=True, log="")
            started = time.monotonic()
            await self._bases.ensure(
                spec.base_images, scope=scope, pull=spec.pull, pull_timeout=spec.pull_timeout
            )
            remaining = spec.timeout_seconds - (time.monotonic() - started)
            progress = BuildProgress(log=LogTail(self._log_bytes))
            parent, name = await self._cgroup(spec, progress)
            limits = BuildLimits(
                memory_mb=spec.memory_mb, cpus=spec.cpus, network=spec.network, cgroup_parent=parent
            )
            all_labels = {**labels, LABEL_SOURCE_DIGEST: digest}
            try:
                result = await self._run(
                    context_tar, dockerfile, all_labels, limits, progress, remaining, cancel
                )
                if result.stopped is RunStatus.TIMED_OUT:
                    error = f"timed out after {spec.timeout_seconds:g} s while building"
                    result = dataclasses.replace(result, error=error)
            finally:
                if parent is not None:
                    await asyncio.to_thread(self._cgroups.remove, name)
            logger.info(
                "image built" if result.image_id else "build stopped",
                extra={
                    "image_id": result.image_id,
                    "source_digest": digest,
                    "stopped": result.stopped,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            if result.image_id is not None:
                self._images[(digest, scope)] = result.image_id
            return result

    async def _cgroup(self, spec: BuildSpec, progress: BuildProgress) -> tuple[str | None, str]:
        """The cgroup parent that carries the build's pids limit (see ``build_cgroup``)."""
        name = uuid.uuid4().hex
        if spec.pids_limit is None:
            return None, name
        if not self._cgroups.checked:
            info = await self._clients.call("read the engine's info", lambda api: api.info())
            await asyncio.to_thread(self._cgroups.check_engine, info)
        parent, why_not = await asyncio.to_thread(self._cgroups.create, name, spec.pids_limit)
        if why_not is not None:
            progress.log.add(f"note: the RUN steps of this build have no pids limit ({why_not})\n")
        return parent, name

    async def _run(
        self,
        context_tar: Path,
        dockerfile: str,
        labels: Mapping[str, str],
        limits: BuildLimits,
        progress: BuildProgress,
        seconds: float,
        cancel: asyncio.Event | None,
    ) -> BuildResult:
        client = self._clients.one_off(None)  # our deadline, not a socket timeout
        journal = await asyncio.to_thread(self._journal.open)
        if journal is not None:
            progress.on_created = journal.note
        try:
            return await self._stream(
                client, context_tar, dockerfile, labels, limits, progress, seconds, cancel
            )
        finally:
            if journal is not None:
                journal.keep = progress.leftovers_kept
                await asyncio.to_thread(journal.close)

    async def _stream(
        self,
        client: ClosingClient,
        context_tar: Path,
        dockerfile: str,
        labels: Mapping[str, str],
        limits: BuildLimits,
        progress: BuildProgress,
        seconds: float,
        cancel: asyncio.Event | None,
    ) -> BuildResult:

        def build() -> None:
            with context_tar.open("rb") as context:
                stream_build(client.api, context, dockerfile, labels, limits, progress)

        building = in_thread(build, name=f"docker-build-{labels[LABEL_SOURCE_DIGEST][:12]}")
        stopped: RunStatus | None = None
        try:
            stopped = await _first_of(building, cancel, seconds)
        finally:
            if not building.done():
                progress.close()  # the engine stops the build on the closed connection
                with suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(building), _THREAD_WAIT_SECONDS)
            client.close()
        if stopped is not None:
            await self._remove_leftovers(progress)
            what = (
                "cancelled" if stopped is RunStatus.CANCELLED else f"timed out after {seconds:g} s"
            )
            return BuildResult(
                image_id=None,
                cached=False,
                log=progress.log.text(),
                stopped=stopped,
                error=f"{what} while building",
            )
        try:
            building.result()
        except docker.errors.APIError as exc:
            await self._remove_leftovers(progress)
            explanation = str(exc.explanation or exc)
            if exc.is_client_error() or "Dockerfile" in explanation:
                raise BuildFailed(
                    f"the image does not build: {explanation}{progress.log.tail()}"
                ) from exc
            raise EngineUnavailable(f"docker engine failed to build: {exc}") from exc
        except ENGINE_ERRORS as exc:
            await self._remove_leftovers(progress)
            raise EngineUnavailable(f"docker engine failed to build: {exc}") from exc
        if progress.error is not None:
            await self._remove_leftovers(progress)
            raise describe_failure(progress)
        if progress.image_id is None:
            await self._remove_leftovers(progress)
            raise EngineUnavailable(f"the build ended without an image id{progress.log.tail()}")
        return BuildResult(image_id=progress.image_id, cached=False, log=progress.log.text())

    async def _remove_leftovers(self, progress: BuildProgress) -> None:
        """Remove what a build that did not finish left: the container of the step that
        was running (the engine removes it itself on a stopped build; given a moment, it is
        forced) and the images of its finished steps."""
        with progress.lock:
            running, created = progress.running, list(progress.created)
        since = progress.started
        try:
            if running is not None:
                await self._clients.call(
                    "remove a build container", _remove_container, running, since
                )
            for image in reversed(created):
                await self._clients.call("remove a build image", _remove_image, image, since)
        except EngineUnavailable:
            progress.leftovers_kept = True  # its journal stays: image retention removes them
            logger.exception("could not remove what a build left")


async def _first_of(
    building: asyncio.Future[None], cancel: asyncio.Event | None, seconds: float
) -> RunStatus | None:
    """Wait for the build, its deadline or ``cancel``: ``None`` when the build ended first."""
    if seconds <= 0:
        return RunStatus.TIMED_OUT
    async with TaskOwner("docker-build") as tasks:
        waiting: set[asyncio.Future[Any]] = {building}
        cancelled = None
        if cancel is not None:
            cancelled = tasks.spawn(cancel.wait(), name="docker-build-cancel")
            waiting.add(cancelled)
        done, _ = await asyncio.wait(waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        if cancelled is not None:
            cancelled.cancel()
        if building in done:
            return None
        if cancelled is not None and cancelled in done:
            return RunStatus.CANCELLED
        return RunStatus.TIMED_OUT


def _remove_container(api: Any, container_id: str, since: float) -> None:
    deadline = time.monotonic() + _LEFTOVER_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            found = api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        if not made_since(found, since):  # named by the step's own output: not ours
            logger.warning("build leftover kept: older than the build", extra={"id": container_id})
            return
        time.sleep(0.1)
    with suppress(docker.errors.NotFound):
        api.remove_container(container_id, v=True, force=True)


def _remove_image(api: Any, image_id: str, since: float) -> None:
    # Never forced: an image that another image now builds on, or that was tagged since,
    # is not this build's leftover any more; nor one older than the build.
    with suppress(docker.errors.NotFound, docker.errors.APIError):
        if made_since(api.inspect_image(image_id), since):
            api.remove_image(image_id, noprune=True)
