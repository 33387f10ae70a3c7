"""The images Longshore built on the engine: listing them by label, removing them, the build
cache, and what a build that never finished left (``ImageEngine``'s contract).

A final job image carries the labels of its build (``longshore.scope``, ``longshore.job``,
``longshore.source-digest``); the images of its steps do not (the classic builder labels the
last one only). They are the final image's parents, so removing the final image (never
forced) removes them too, unless another image builds on them. The images of the steps of a
build that failed or stopped are removed by the build itself; those of a build whose process
died are found in its *build journal*: a file per build under ``journal_dir`` listing the
images the build made, removed when the build ends (:class:`BuildJournal`). A journal left
behind names images this deployment made and nobody will finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped, unused-ignore]

from jobrunner.docker_engine.client import DockerClients
from jobrunner.engine import ImageInfo

logger = logging.getLogger(__name__)


class JournalEntry:
    """The journal of one build under way: an open file, locked while the build runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.keep = False
        """Set when the build's images could not be removed: the file stays for a sweep."""

    def note(self, image_id: str) -> None:
        """Append an image the build made (called from the build's thread)."""
        os.write(self._fd, (image_id + "\n").encode())
        os.fsync(self._fd)

    def close(self) -> None:
        """The build ended: forget its journal (unless ``keep``), and unlock it."""
        if not self.keep:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)


class BuildJournal:
    """One file per build under way, listing the images its steps made (see the module
    docstring), locked by the process building (``flock``) so that no other process takes
    a build under way for a dead one. ``directory`` ``None``: nothing is journaled."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def open(self) -> JournalEntry | None:
        if self.directory is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        return JournalEntry(self.directory / f"build-{uuid.uuid4().hex}.images")

    def left(self) -> Iterator[tuple[Path, list[str]]]:
        """The journals no build holds any more and their images, each locked while the
        caller handles it (the file is removed after)."""
        if self.directory is None or not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("build-*.images")):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a build under way
                images = path.read_text().split()
                yield path, images
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            finally:
                os.close(fd)


class EngineImages:
    """Image operations on one engine (the ``ImageEngine`` protocol of
    :mod:`jobrunner.engine`)."""

    def __init__(self, clients: DockerClients, journal: BuildJournal) -> None:
        self._clients = clients
        self.journal = journal

    async def labelled_images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        selectors = [f"{key}={value}" for key, value in labels.items()]
        listed: list[dict[str, Any]] = await self._clients.call(
            "list images", lambda api: api.images(filters={"label": selectors})
        )
        return [
            ImageInfo(
                image_id=str(image["Id"]),
                labels=dict(image.get("Labels") or {}),
                created=float(image.get("Created") or 0),
                size=int(image.get("Size") or 0),
            )
            for image in listed
        ]

    async def remove_image(self, image_id: str) -> bool:
        """Remove an image (never forced: one a container uses or another image builds on
        stays); whether it was removed."""
        return await self._clients.call("remove an image", _remove, image_id, False)

    async def remove_build_leftovers(self) -> list[str]:
        """Remove the images of builds whose process died (their journals), newest first
        (a step's image is the parent of the next); the ids removed."""
        removed: list[str] = []
        for _, images in self.journal.left():
            for image_id in reversed(images):
                if await self._clients.call("remove a build image", _remove, image_id, True):
                    removed.append(image_id)
        return removed

    async def prune_build_cache(self, keep_bytes: int) -> int:
        """Shrink the engine's build cache to ``keep_bytes``; the bytes freed."""
        result: dict[str, Any] = await self._clients.call(
            "prune the build cache", lambda api: api.prune_builds(keep_storage=keep_bytes)
        )
        return int(result.get("SpaceReclaimed") or 0)


def _remove(api: Any, image_id: str, noprune: bool) -> bool:
    try:
        api.remove_image(image_id, noprune=noprune)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # in use by a container, or another image builds on it
            logger.info("image kept: in use", extra={"image_id": image_id})
            return False
        raise
    return True
