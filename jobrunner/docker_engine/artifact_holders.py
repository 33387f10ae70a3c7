"""Artifacts directories that are size-capped while the job writes them.

A job's ``artifactsPath`` must be writable on a read-only root, capped while it is written
(a job must not be able to fill the engine's disk), and still readable after the job's
container has exited. A ``tmpfs`` mount of the container is capped but gone with the
container's processes; a volume on the engine's disk survives the exit but has no cap. So
each run gets a **tmpfs volume** (the ``local`` driver's ``type=tmpfs``, ``size`` = the
artifacts cap, mode ``1777`` so any user may write, ``nosuid,nodev``), and a **holder**: a
tiny container (:mod:`~jobrunner.docker_engine.holder_image`) that mounts the volume and
waits. The engine keeps a tmpfs volume mounted while any running container uses it, so
what the job wrote is still there after the job's exit, and is read back through the
holder; then the holder and the volume are removed, which frees the memory. Writing past
the cap fails the write (``ENOSPC``) in the job; the pages also count against the job's
memory limit.

Starting a holder costs about as much as a job's own container, so an engine may keep
spares, started after each run, off the next run's critical path (the service keeps one;
without spares each run starts its holder before its container). A spare is
replaced after :data:`SPARE_MAX_AGE_SECONDS`; holders left by a worker that died are
removed by the orphan sweep (:mod:`~jobrunner.docker_engine.orphans`), those of its runs
with their runs' containers, idle ones once older than :data:`ORPHAN_AGE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Final

import docker  # type: ignore[import-untyped, unused-ignore]
from docker.types import LogConfig, Mount  # type: ignore[import-untyped, unused-ignore]

from jobrunner.docker_engine.client import DockerClients
from jobrunner.docker_engine.holder_image import HOLDER_MOUNT, ensure_holder_image
from jobrunner.engine import LABEL_HOLDER, LABEL_SCOPE
from jobrunner.errors import EngineUnavailable
from store.background import TaskOwner

logger = logging.getLogger(__name__)

SPARE_MAX_AGE_SECONDS: Final = 30 * 60
ORPHAN_AGE_SECONDS: Final = 2 * 3600
HOLDER_USER: Final = "65534:65534"


@dataclass(frozen=True, kw_only=True, slots=True)
class Holder:
    """A running holder of a tmpfs volume: read the artifacts at ``path`` of ``container_id``."""

    container_id: str
    volume: str
    size_bytes: int
    scope: str | None
    made_at: float
    path: str = HOLDER_MOUNT


class ArtifactHolders:
    """The holders of one engine (see the module docstring). ``spares`` is how many idle
    holders of each (scope, size) are kept started."""

    def __init__(self, clients: DockerClients, tasks: TaskOwner, *, spares: int = 1) -> None:
        self._clients = clients
        self._tasks = tasks
        self._wanted = spares
        self._spares: dict[tuple[str | None, int], list[Holder]] = {}
        self._image: str | None = None
        self._image_lock = asyncio.Lock()
        self.mine: set[str] = set()
        """Containers of the holders this engine made and has not removed."""

    async def take(self, *, scope: str | None, size_bytes: int) -> Holder | None:
        """A started holder of an empty volume of ``size_bytes``, the caller's until
        :meth:`release`; ``None`` when the engine's architecture has no holder program
        (the run then gets a plain volume, uncapped while written)."""
        spares = self._spares.setdefault((scope, size_bytes), [])
        while spares:
            spare = spares.pop()
            if time.monotonic() - spare.made_at < SPARE_MAX_AGE_SECONDS:
                return spare
            self._tasks.spawn(self._remove(spare), name=f"holder-retire-{spare.volume[-12:]}")
        return await self._make(scope, size_bytes)

    async def release(
        self, holder: Holder, job_removed: Awaitable[object], *, reuse: bool = False
    ) -> None:
        """Remove ``holder`` while ``job_removed`` (the removal of the job's container)
        runs, then its volume (in use until both are gone), then start a spare in its
        place in the background. With ``reuse`` (the run left the volume as new, see
        ``ArtifactReader.left_clean``) the holder itself becomes a spare, if one is wanted."""
        key = (holder.scope, holder.size_bytes)
        spares = self._spares.setdefault(key, [])
        if reuse and len(spares) < self._wanted:
            await job_removed
            spares.append(holder)
            return
        try:
            await asyncio.gather(
                self._clients.call(
                    "remove an artifacts holder", remove_holder, holder.container_id
                ),
                job_removed,
            )
            self.mine.discard(holder.container_id)
            await self._clients.call("remove an artifacts volume", remove_volume, holder.volume)
        finally:
            if len(spares) < self._wanted:
                self._tasks.spawn(self._refill(key), name=f"holder-spare-{holder.volume[-12:]}")

    async def close(self) -> None:
        """Remove the spares."""
        spares = [holder for kept in self._spares.values() for holder in kept]
        self._spares.clear()
        for holder in spares:
            await self._remove(holder)

    async def _refill(self, key: tuple[str | None, int]) -> None:
        try:
            spare = await self._make(*key)
        except EngineUnavailable as exc:
            logger.warning("could not start a spare artifacts holder", extra={"error": str(exc)})
            return
        if spare is not None:
            self._spares.setdefault(key, []).append(spare)

    async def _make(self, scope: str | None, size_bytes: int) -> Holder | None:
        image = await self._holder_image()
        if image is None:
            return None
        volume = f"longshore-artifacts-{uuid.uuid4().hex}"
        labels = {LABEL_HOLDER: volume}
        if scope is not None:
            labels[LABEL_SCOPE] = scope
        call = self._clients.call
        await call(
            "create an artifacts volume",
            create_tmpfs_volume,
            volume,
            size_bytes,
            labels,
            options="mode=1777,nosuid,nodev",
        )
        try:
            container_id = await call(
                "create an artifacts holder",
                create_holder,
                image,
                volume,
                labels,
                read_only=True,
            )
            self.mine.add(container_id)
            await call("start an artifacts holder", lambda api: api.start(container_id))
        except BaseException:
            await asyncio.shield(self._remove_parts(None, volume))
            raise
        return Holder(
            container_id=container_id,
            volume=volume,
            size_bytes=size_bytes,
            scope=scope,
            made_at=time.monotonic(),
        )

    async def _holder_image(self) -> str | None:
        async with self._image_lock:
            if self._image is None:
                found = await self._clients.call("import the holder image", ensure_holder_image)
                self._image = found or ""
                if found is None:
                    logger.warning("artifacts directories are not capped on this engine")
            return self._image or None

    async def _remove(self, holder: Holder) -> None:
        await self._remove_parts(holder.container_id, holder.volume)

    async def _remove_parts(self, container_id: str | None, volume: str) -> None:
        try:
            if container_id is not None:
                await self._clients.call("remove an artifacts holder", remove_holder, container_id)
                self.mine.discard(container_id)
            await self._clients.call("remove an artifacts volume", remove_volume, volume)
        except EngineUnavailable:
            logger.exception("could not remove an artifacts holder", extra={"volume": volume})


def create_tmpfs_volume(
    api: Any, name: str, size_bytes: int, labels: dict[str, str], *, options: str
) -> None:
    """A volume held in memory (tmpfs) of at most ``size_bytes``, mounted with ``options``
    (mode and flags, e.g. ``mode=1777,nosuid,nodev``)."""
    api.create_volume(
        name=name,
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": f"size={size_bytes},{options}"},
        labels=labels,
    )


def create_holder(
    api: Any, image: str, volume: str, labels: dict[str, str], *, read_only: bool
) -> str:
    """A holder container of ``volume`` (mounted at ``HOLDER_MOUNT``): no network, no
    capabilities, a read-only root, tiny limits, as nobody; only the engine's copy calls
    reach the volume through it."""
    host_config = api.create_host_config(
        mounts=[Mount(target=HOLDER_MOUNT, source=volume, type="volume", read_only=read_only)],
        network_mode="none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        mem_limit="16m",
        pids_limit=4,
        log_config=LogConfig(type="none"),
    )
    created = api.create_container(
        image, labels=labels, host_config=host_config, network_disabled=True, user=HOLDER_USER
    )
    return str(created["Id"])


def remove_holder(api: Any, container_id: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        api.remove_container(container_id, v=False, force=True)


def remove_volume(api: Any, volume: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        api.remove_volume(volume, force=True)
