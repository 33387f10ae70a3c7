"""Reading a job's artifacts back from its stopped container.

- **Where the artifacts are read**: ``artifacts_path`` is a tmpfs volume, capped while it
  is written, that a holder container keeps mounted after the job's exit
  (:mod:`~jobrunner.docker_engine.artifact_holders`); it is read through the holder. On an
  engine without holders it is an anonymous volume of the job's container, read from the
  stopped container. Either way the collection is capped too (count, per file, total, and
  the raw tar read).
- **An untouched artifacts directory is not read back.** ``get_archive`` costs ~55 ms even
  for an empty directory (the daemon re-executes itself to make the tar); its ``HEAD`` form
  (the directory's stat only) ~4 ms. The volume is a fresh directory at ``create``, filled
  then with the image's own content at that path, if any; anything the job adds, removes or
  renames directly in it changes its mtime, and anything deeper needs a subdirectory made
  there first. So when the image leaves that directory empty (checked once per image id
  with one ``get_archive`` once the job's container is created, before it starts) and the
  stat taken before ``start`` equals the stat after the exit (name, size, mode, mtime with
  sub-second digits, i.e. a file system with fine timestamps), the directory is still
  empty: nothing to collect. Any difference, an image not named by its id, or a failed stat
  means the full ``get_archive``. The job can only hide its own artifacts this way (by
  resetting the mtime), never reach anything else; the container is unchanged (same
  volume, same read-only root, no host mounts).
- **A holder left clean is used again** (:meth:`ArtifactReader.left_clean`): when the
  directory was left untouched (its size, which on tmpfs grows with every entry, included),
  the image leaves the volume's root as a fresh holder has it (empty, ``root``-owned, mode
  ``1777``), and the job ran as a numeric user other than 0 (who cannot change a directory
  owned by root: no ``chmod``, no extended attributes on a sticky directory), the volume is
  as new and its holder becomes the next spare instead of being replaced.
"""

from __future__ import annotations

import io
import re
import tarfile
from contextlib import closing
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped, unused-ignore]

from jobrunner.artifact_collection import collect_artifacts
from jobrunner.docker_engine.client import ENGINE_ERRORS, DockerClients, in_thread
from jobrunner.docker_engine.sdk import path_stat
from jobrunner.engine import CollectedArtifact, RunSpec
from jobrunner.errors import EngineUnavailable
from store.artifacts import ArtifactStore

_EMPTY_TAR_BYTES = 64 * 1024  # an empty directory's tar is ~1.5 KiB; past this: not empty
_UNPRIVILEGED = re.compile(r"^[1-9][0-9]*(:[0-9]+)?$")


class ArtifactReader:
    """Collects the artifacts of a run into the artifact store, skipping the read back of a
    directory the job left untouched (see the module docstring)."""

    def __init__(self, clients: DockerClients, store: ArtifactStore) -> None:
        self._clients = clients
        self._store = store
        # (image id, artifacts path) -> whether a new container's volume there starts empty,
        # and whether also as a fresh holder's (root-owned, mode 1777)
        self._empty_artifacts: dict[tuple[str, str], bool] = {}
        self._pristine: dict[tuple[str, str], bool] = {}

    def left_clean(self, spec: RunSpec) -> bool:
        """Whether a directory this run left untouched is as a fresh holder's (see the module
        docstring)."""
        key = (spec.image, spec.artifacts_path or "")
        return self._pristine.get(key, False) and bool(_UNPRIVILEGED.fullmatch(spec.user or ""))

    async def baseline(self, container_id: str, path: str, spec: RunSpec) -> dict[str, Any] | None:
        """The stat of the artifacts directory at ``path`` of ``container_id`` (the created,
        unstarted job container, or its holder) when it starts empty, else ``None`` (then
        the artifacts are always read back in full)."""
        if spec.artifacts_path is None or not spec.image.startswith("sha256:"):
            return None  # a tag may name another image tomorrow: nothing to remember
        key = (spec.image, spec.artifacts_path)
        empty = self._empty_artifacts.get(key)
        if empty is None:
            try:
                found = await in_thread(
                    lambda: self._is_empty_directory(container_id, path),
                    name=f"docker-artifacts-{container_id[:12]}",
                )
            except EngineUnavailable:
                found = None
            if found is None:
                return None  # the engine failed to answer: not remembered, tried next time
            empty, self._pristine[key] = found
            self._empty_artifacts[key] = empty
        if not empty:
            return None
        try:
            return await self._clients.call("stat the artifacts", path_stat, container_id, path)
        except EngineUnavailable:
            return None  # read back in full after the exit

    async def untouched(self, container_id: str, path: str, before: dict[str, Any] | None) -> bool:
        """Whether the artifacts directory is still as the empty one stat'ed before the start
        (see the module docstring); ``False`` when unsure."""
        if before is None:
            return False
        try:
            after = await self._clients.call("stat the artifacts", path_stat, container_id, path)
        except EngineUnavailable:
            return False  # the full read back says what is wrong
        return after == before

    async def collect(
        self, container_id: str, path: str, spec: RunSpec
    ) -> tuple[tuple[CollectedArtifact, ...], tuple[str, ...]]:
        """Read the artifacts directory at ``path`` of ``container_id`` back and store its
        files (within ``spec.artifact_limits``); the artifacts and the problems met."""

        def collect() -> tuple[tuple[CollectedArtifact, ...], tuple[str, ...]]:
            with closing(self._clients.one_off(self._clients.timeout)) as one_off:
                api = one_off.api
                try:
                    chunks, _stat = api.get_archive(container_id, path)
                except docker.errors.NotFound:
                    return (), (f"{spec.artifacts_path} does not exist in the container",)
                return collect_artifacts(
                    chunks, self._store, spec.artifact_limits, root=Path(path).name
                )

        try:
            return await in_thread(collect, name=f"docker-artifacts-{container_id[:12]}")
        except ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"docker engine failed to copy artifacts: {exc}") from exc

    def _is_empty_directory(self, container_id: str, path: str) -> tuple[bool, bool] | None:
        """Whether ``path`` in the container is an empty directory, and whether also
        root-owned with mode 1777, from its tar (read up to ``_EMPTY_TAR_BYTES``; anything
        unexpected: not empty); ``None`` if the engine failed."""
        with closing(self._clients.one_off(self._clients.timeout)) as one_off:
            try:
                chunks, _stat = one_off.api.get_archive(container_id, path)
                data = bytearray()
                for chunk in chunks:
                    data += chunk
                    if len(data) > _EMPTY_TAR_BYTES:
                        return False, False
                with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:") as tar:
                    members = tar.getmembers()
            except ENGINE_ERRORS:
                return None
            except (tarfile.TarError, OSError):
                return False, False
        if len(members) != 1 or not members[0].isdir():
            return False, False
        root = members[0]
        return True, (root.uid, root.gid, root.mode & 0o7777) == (0, 0, 0o1777)
