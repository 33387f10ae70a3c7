"""Files a run gets under ``/run`` (its secrets under ``/run/secrets/``, ``/run/params.json``)
without writing them to any disk.

The job's root is read-only and the engine cannot copy files into a container's ``tmpfs``
before it starts, so the files go into a **tmpfs volume** (the ``local`` driver's
``type=tmpfs``, in memory, ``nosuid,nodev,noexec``) held mounted by a holder container (the
artifacts holder's image: :mod:`~jobrunner.docker_engine.artifact_holders`), written with
``put_archive`` into the holder (the tar carries each file's owner and mode: 0400, owned by
the run's numeric user), and mounted **read-only at /run** in the job's container. The
holder and the volume are removed after the job's container, which frees the memory; a
holder left by a worker that died is removed by the orphan sweep like an artifacts holder.
"""

from __future__ import annotations

import asyncio
import io
import re
import tarfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

from docker.types import Mount  # type: ignore[import-untyped, unused-ignore]

from jobrunner.docker_engine.artifact_holders import (
    create_holder,
    create_tmpfs_volume,
    remove_holder,
    remove_volume,
)
from jobrunner.docker_engine.client import DockerClients
from jobrunner.docker_engine.holder_image import HOLDER_MOUNT, ensure_holder_image
from jobrunner.engine import LABEL_HOLDER, LABEL_SCOPE, RunFile, RunSpec
from jobrunner.errors import EngineUnavailable

RUN_FILES_MOUNT: Final = "/run"
_NUMERIC_USER: Final = re.compile(r"^([0-9]+)(?::([0-9]+))?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class FilesHolder:
    """The holder of a run's files volume."""

    container_id: str
    volume: str


class RunFiles:
    """Makes and removes the files volumes of runs (see the module docstring)."""

    def __init__(self, clients: DockerClients) -> None:
        self._clients = clients
        self._image: str | None = None
        self._lock = asyncio.Lock()

    async def make(self, spec: RunSpec) -> FilesHolder | None:
        """A started holder of a volume holding ``spec.files``; ``None`` when there are none.
        Raises ``EngineUnavailable`` when the engine has no holder image or fails."""
        if not spec.files:
            return None
        image = await self._holder_image()
        volume = f"longshore-runfiles-{uuid.uuid4().hex}"
        labels = {LABEL_HOLDER: volume}
        if LABEL_SCOPE in spec.labels:
            labels[LABEL_SCOPE] = spec.labels[LABEL_SCOPE]
        size = 64 * 1024 + sum(len(f.content) + 4096 for f in spec.files)
        call = self._clients.call
        await call(
            "create a run files volume",
            create_tmpfs_volume,
            volume,
            size,
            labels,
            options="mode=0755,nosuid,nodev,noexec",
        )
        container_id: str | None = None
        try:
            container_id = await call(
                "create a run files holder",
                create_holder,
                image,
                volume,
                labels,
                read_only=False,
            )
            await call("start a run files holder", lambda api: api.start(container_id))
            archive = _archive(spec.files, spec.user)
            await call(
                "copy the run files",
                lambda api: api.put_archive(container_id, HOLDER_MOUNT, archive),
            )
        except BaseException:
            made = FilesHolder(container_id=container_id or "", volume=volume)
            await asyncio.shield(self.remove(made))
            raise
        return FilesHolder(container_id=container_id, volume=volume)

    async def remove(self, holder: FilesHolder | None) -> None:
        """Remove the holder and its volume (the job's container must be gone)."""
        if holder is None:
            return
        if holder.container_id:
            await self._clients.call(
                "remove a run files holder", remove_holder, holder.container_id
            )
        await self._clients.call("remove a run files volume", remove_volume, holder.volume)

    async def _holder_image(self) -> str:
        async with self._lock:
            if self._image is None:
                found = await self._clients.call("import the holder image", ensure_holder_image)
                if found is None:
                    raise EngineUnavailable(
                        "this engine's architecture has no holder program: run files "
                        "(secrets as files, /run/params.json) cannot be given safely"
                    )
                self._image = found
            return self._image


def _owner(user: str | None) -> tuple[int, int] | None:
    """The numeric owner of the files, when the run's user is numeric."""
    match = _NUMERIC_USER.fullmatch(user or "")
    if match is None:
        return None
    uid = int(match.group(1))
    return uid, int(match.group(2) or uid)


def _archive(files: tuple[RunFile, ...], user: str | None) -> bytes:
    """A tar of ``files`` (paths relative to ``/run``), its directories 0755 root-owned, each
    file of its mode owned by the run's user (mode 0444 when the user is a name: the owner
    is not known outside the image)."""
    owner = _owner(user)
    out = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()
        for item in files:
            parts = item.path.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    tar.addfile(info)
            info = tarfile.TarInfo(item.path)
            info.size, info.mtime = len(item.content), now
            info.mode = item.mode if owner is not None else item.mode | 0o444
            if owner is not None:
                info.uid, info.gid = owner
            tar.addfile(info, io.BytesIO(item.content))
    return out.getvalue()


def files_mount(volume: str) -> Any:
    """The job container's read-only mount of the files volume at ``/run``."""
    return Mount(target=RUN_FILES_MOUNT, source=volume, type="volume", read_only=True)
