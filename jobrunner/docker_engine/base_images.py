"""The images a build starts from, made sure of before the build is sent.

The Dockerfile policy (``jobrunner.build_policy``) decides which image *names* a build may
use; whether those images may be used *on this engine* is decided here, for each one:

- **present, or refused**: the classic builder pulls a missing ``FROM`` or ``COPY --from``
  image from a registry even when asked not to pull. With ``pull="never"`` a missing image
  refuses the build (:class:`SourceRejected` naming it) before anything reaches the
  builder, so the engine never tries a registry; with ``pull="missing"`` Longshore pulls it
  itself, once at a time per image, under ``pull_timeout`` (a failed or late pull is a
  :class:`FetchFailed`, retried);
- **not another deployment's**: an image carrying a ``longshore.*`` label was built by
  Longshore; one of another scope (``longshore.scope``, or none) is refused, by name or by
  id, so one deployment's build cannot read another's images.

What is checked is the image the name resolves to now; removing or retagging it between the
check and the build is the engine owner's doing (docs/security.md).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from contextlib import closing
from typing import Any, Literal

import docker  # type: ignore[import-untyped, unused-ignore]

from jobrunner.docker_engine.client import ENGINE_ERRORS, DockerClients, in_thread
from jobrunner.engine import LABEL_SCOPE
from jobrunner.errors import FetchFailed, SourceRejected

_LONGSHORE_LABEL = "longshore."
_IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{12,64}$")
_NO_SUCH_IMAGE = re.compile(
    r"manifest unknown|manifest for .* not found|repository does not exist|pull access denied",
    re.IGNORECASE,
)


def inspect_image(api: Any, reference: str) -> dict[str, Any] | None:
    """The engine's inspect of ``reference``, or ``None`` when it has no such image."""
    try:
        found: dict[str, Any] = api.inspect_image(reference)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.is_client_error():  # e.g. an invalid reference: there is no such image
            return None
        raise
    return found


class BaseImages:
    """Checks (and with ``pull="missing"``, pulls) the base images of builds."""

    def __init__(self, clients: DockerClients) -> None:
        self._clients = clients
        self._pulls: dict[str, asyncio.Lock] = {}

    async def ensure(
        self,
        images: Sequence[str],
        *,
        scope: str | None,
        pull: Literal["never", "missing"],
        pull_timeout: float,
    ) -> None:
        """Make sure every image of ``images`` is on the engine and may be used by a build
        of ``scope``; raise :class:`SourceRejected` or :class:`FetchFailed` otherwise."""
        for image in images:
            found = await self._clients.call("inspect an image", inspect_image, image)
            if found is None:
                if pull == "never":
                    raise SourceRejected(
                        f"base image {image!r} is not on the Docker engine and "
                        "WORKER_JOB_PULL=never: it is not pulled (load it on the engine, or "
                        "set WORKER_JOB_PULL=missing)"
                    )
                found = await self._pull(image, seconds=pull_timeout)
            labels = (found.get("Config") or {}).get("Labels") or {}
            ours = any(key.startswith(_LONGSHORE_LABEL) for key in labels)
            if ours and (scope is None or labels.get(LABEL_SCOPE) != scope):
                raise SourceRejected(
                    f"image {image!r} was built by Longshore for another deployment "
                    "(longshore.scope); it cannot be used by this one's builds"
                )

    async def _pull(self, image: str, *, seconds: float) -> dict[str, Any]:
        if _IMAGE_ID.fullmatch(image):
            raise SourceRejected(f"base image {image!r} is an image id: it cannot be pulled")
        lock = self._pulls.setdefault(image, asyncio.Lock())
        async with lock:  # one pull of an image at a time; the next finds it present
            found = await self._clients.call("inspect an image", inspect_image, image)
            if found is not None:
                return found
            client = self._clients.one_off(seconds)
            pulled = in_thread(lambda: _pull_blocking(client.api, image), name="docker-pull")
            try:
                await asyncio.wait_for(asyncio.shield(pulled), seconds)
            except TimeoutError:
                raise FetchFailed(
                    f"pulling base image {image!r} did not finish within {seconds:g} s"
                ) from None
            except ENGINE_ERRORS as exc:
                if _NO_SUCH_IMAGE.search(str(exc)):
                    # The registry answered that it has no such image (or none this engine
                    # may pull): waiting cannot bring it, unlike a registry out of reach.
                    raise SourceRejected(f"base image {image!r} cannot be pulled: {exc}") from exc
                raise FetchFailed(f"pulling base image {image!r} failed: {exc}") from exc
            finally:
                client.close()  # ends a pull still under way
            found = await self._clients.call("inspect an image", inspect_image, image)
            if found is None:
                raise FetchFailed(f"pulling base image {image!r} left no such image")
            return found


def _pull_blocking(api: Any, image: str) -> None:
    repository, _, tag = image.rpartition(":") if "@" not in image else (image, "", "")
    if "/" in tag:  # a registry port, not a tag: "host:5000/name"
        repository, tag = image, ""
    with closing(api.pull(repository, tag=tag or None, stream=True, decode=True)) as stream:
        for item in stream:
            if isinstance(item, dict) and item.get("error"):
                raise docker.errors.APIError(str(item["error"]))
