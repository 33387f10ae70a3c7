"""Building job images, cached by source digest.

A build streams ``APIClient.build`` (custom context = the verified tar as is,
``pull=False``, ``rm``/``forcerm``, ``RUN`` steps on network ``none``) on a thread of its
own and keeps only the log's tail. An image labelled with the source digest is reused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import docker  # type: ignore[import-untyped, unused-ignore]

from jobrunner.docker_engine.client import ENGINE_ERRORS, DockerClients, in_thread
from jobrunner.docker_engine.sdk import find_image, image_if_labelled
from jobrunner.engine import LABEL_SOURCE_DIGEST, BuildResult
from jobrunner.errors import BuildFailed, EngineUnavailable

logger = logging.getLogger(__name__)


class ImageBuilder:
    """Builds the image of a source once, and finds it again by its digest label
    (``ContainerEngine.build``'s contract)."""

    def __init__(self, clients: DockerClients, *, log_bytes: int, timeout: float) -> None:
        self._clients = clients
        self._log_bytes = log_bytes
        self._timeout = timeout
        self._digest_locks: dict[str, asyncio.Lock] = {}
        self._images: dict[str, str] = {}  # source digest -> image id seen with that label

    async def build(
        self,
        context_tar: Path,
        dockerfile: str,
        digest: str,
        labels: Mapping[str, str],
        *,
        network: str = "none",
    ) -> BuildResult:
        call = self._clients.call
        # Two runs of one new source in this process build once; the second finds the image.
        lock = self._digest_locks.setdefault(digest, asyncio.Lock())
        async with lock:
            # Listing by label scans every image (30 ms with ~350 images here); an image id
            # seen before is checked with one inspect (~1 ms) that it still carries the label.
            known = self._images.get(digest)
            existing = None
            if known is not None:
                existing = await call("inspect an image", image_if_labelled, known, digest)
            if existing is None:
                existing = await call("list images", find_image, digest)
            if existing is not None:
                self._images[digest] = existing
                return BuildResult(image_id=existing, cached=True, log="")
            all_labels = {**labels, LABEL_SOURCE_DIGEST: digest}
            started = time.monotonic()
            result = await in_thread(
                lambda: self._build_blocking(context_tar, dockerfile, all_labels, network),
                name=f"docker-build-{digest[:12]}",
            )
            logger.info(
                "image built",
                extra={
                    "image_id": result.image_id,
                    "source_digest": digest,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            self._images[digest] = result.image_id
            return result

    def _build_blocking(
        self, context_tar: Path, dockerfile: str, labels: dict[str, str], network: str
    ) -> BuildResult:
        log = LogTail(self._log_bytes)
        image_id: str | None = None
        error: str | None = None
        deadline = time.monotonic() + self._timeout
        try:
            # ``timeout`` is the socket's: a step silent for that long ends the build.
            with (
                closing(self._clients.one_off(self._timeout)) as one_off,
                context_tar.open("rb") as context,
            ):
                api = one_off.api
                stream = api.build(
                    fileobj=context,
                    custom_context=True,
                    dockerfile=dockerfile,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    nocache=False,
                    decode=True,
                    labels=labels,
                    network_mode=network,
                )
                for item in stream:
                    if "stream" in item:
                        log.add(str(item["stream"]))
                    if "error" in item and error is None:
                        error = str(item["error"])
                        log.add(f"ERROR: {error}\n")
                    aux = item.get("aux")
                    if isinstance(aux, dict) and "ID" in aux:
                        image_id = str(aux["ID"])
                    if time.monotonic() > deadline:
                        raise BuildFailed(
                            f"the build took longer than {self._timeout:g} s{log.tail()}"
                        )
        except docker.errors.APIError as exc:
            explanation = str(exc.explanation or exc)
            if exc.is_client_error() or "Dockerfile" in explanation:
                raise BuildFailed(f"the image does not build: {explanation}{log.tail()}") from exc
            raise EngineUnavailable(f"docker engine failed to build: {exc}") from exc
        except ENGINE_ERRORS as exc:
            if time.monotonic() >= deadline - 1:
                raise BuildFailed(
                    f"the build took longer than {self._timeout:g} s{log.tail()}"
                ) from exc
            raise EngineUnavailable(f"docker engine failed to build: {exc}") from exc
        if error is not None:
            raise BuildFailed(f"the image does not build: {error}{log.tail()}")
        if image_id is None:
            raise EngineUnavailable(f"the build ended without an image id{log.tail()}")
        return BuildResult(image_id=image_id, cached=False, log=log.text())


class LogTail:
    """The last ``limit`` characters of a build log."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > 2 * self._limit:
            joined = "".join(self._parts)[-self._limit :]
            self._parts, self._size = [joined], len(joined)

    def text(self) -> str:
        return "".join(self._parts)[-self._limit :]

    def tail(self, chars: int = 4000) -> str:
        """A suffix for error messages: the end of the log."""
        text = self.text()[-chars:].rstrip()
        return f"\n--- end of the build log ---\n{text}" if text else ""
