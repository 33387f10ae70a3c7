"""The container engine contract: build an image from a verified context, run it safely.

``ContainerEngine`` is written once here; ``jobrunner.docker_engine.DockerEngine`` implements
it against the Docker engine. The runner depends on this protocol only, so it can be driven
by a fake in unit tests; integration tests use the real engine.

Errors raised (see ``jobrunner.errors``):

- ``EngineUnavailable`` — the engine cannot be reached or failed to do its part (retry later).
- ``BuildFailed`` — the job's own Dockerfile/context does not build (permanent: the same
  source will fail the same way, so retrying cannot help).
- ``SourceRejected`` — a base image the build needs may not be used (missing while pulls
  are off, or built by Longshore for another scope); ``FetchFailed`` — pulling it failed.

A run never raises for what the *job* did (non-zero exit, timeout, cancellation, too much
output, artifacts over their caps): those are outcomes recorded in ``RunResult``; nor does a
build for its deadline or a cancel (``BuildResult.stopped``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

LABEL_JOB = "longshore.job"
LABEL_RUN = "longshore.run"
LABEL_SOURCE_DIGEST = "longshore.source-digest"
LABEL_SCOPE = "longshore.scope"
"""Label of every job container: its runner's scope (``JobRunner.scope``), i.e. the
deployment whose orphan sweeps may remove it."""

LABEL_HOLDER = "longshore.artifacts-holder"
"""Label of the containers (and volumes) that hold job artifacts directories; on a holder
container, the name of the volume it holds."""

OutputCallback = Callable[[bytes], Awaitable[None]]
"""Receives each piece of merged stdout/stderr as it arrives (live followers)."""


class RunStatus(StrEnum):
    """How a container run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


@dataclass(frozen=True, kw_only=True, slots=True)
class ArtifactLimits:
    """Caps on what is collected from ``artifacts_path`` (the container's tar is untrusted)."""

    max_files: int = 1000
    max_file_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class RunFile:
    """A file a run gets under ``/run`` (``path`` relative to it, e.g. ``secrets/token``),
    never written to disk (``jobrunner.docker_engine.run_files``)."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o400


@dataclass(frozen=True, kw_only=True, slots=True)
class RunSpec:
    """Everything needed to run one container of a built image.

    - ``command``: replaces the image's CMD (the ENTRYPOINT stays); ``None`` keeps the CMD.
    - ``env``: ``KEY=VALUE`` entries, validated by the definition; nothing else is passed.
    - ``labels``: should carry ``longshore.job``, ``longshore.run`` (orphan cleanup finds
      containers by it) and ``longshore.source-digest``.
    - ``network``: ``"none"`` unless the definition's network is allowlisted.
    - ``timeout_seconds``: measured from the container's start; on expiry it is stopped
      (grace period, then killed) and the run ends ``timed_out``.
    - ``output_limit``: bytes retained (head + tail); ``on_output_limit="fail"`` stops the
      container as soon as more was printed and fails the run.
    - ``artifacts_path``: absolute directory whose regular files are collected after exit
      (``None``: collect nothing).
    - ``user``: who the container's processes run as (``None``: the image's ``USER``).
    - ``files``: files under ``/run`` (mounted read-only, in memory; none: no mount).
    - ``mask``: values replaced by ``***`` in the output, live and retained
      (``jobrunner.masking``). ``env``, ``files`` and ``mask`` are left out of the repr.
    """

    image: str
    command: tuple[str, ...] | None = None
    env: tuple[str, ...] = field(default=(), repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)
    memory_mb: int = 512
    cpus: float = 1.0
    pids_limit: int = 256
    network: str = "none"
    timeout_seconds: float = 3600.0
    output_limit: int = 1024 * 1024
    on_output_limit: Literal["truncate", "fail"] = "truncate"
    artifacts_path: str | None = "/artifacts"
    artifact_limits: ArtifactLimits = field(default_factory=ArtifactLimits)
    user: str | None = None
    files: tuple[RunFile, ...] = field(default=(), repr=False)
    mask: tuple[bytes, ...] = field(default=(), repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildSpec:
    """How a new image is built: the build is execution, so it gets the run's sandbox.

    - ``base_images``: the images the Dockerfile names (``jobrunner.build_policy``); each
      must be on the engine and not built by Longshore for another scope, or, with
      ``pull="missing"``, is pulled first (within ``pull_timeout``);
    - ``memory_mb``, ``cpus``, ``pids_limit``: limits of every ``RUN`` step (``None``: the
      engine's defaults); ``network``: the network of ``RUN`` steps;
    - ``timeout_seconds``: the build's deadline, pulls included.
    """

    base_images: tuple[str, ...] = ()
    pull: Literal["never", "missing"] = "never"
    pull_timeout: float = 300.0
    memory_mb: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    network: str = "none"
    timeout_seconds: float = 1800.0


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildResult:
    """An image ready to run: its id, whether it was reused, and the (bounded) build log;
    or a build that was stopped (``stopped`` is ``TIMED_OUT`` or ``CANCELLED``, ``error``
    says so, ``image_id`` is ``None``)."""

    image_id: str | None
    cached: bool
    log: str
    stopped: RunStatus | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CollectedArtifact:
    """A file collected from ``artifacts_path``: its relative name, size and SHA256 (the
    key of its bytes in the artifact store)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """How a run ended and what it left.

    ``output`` is the retained output (head + marker + tail when truncated);
    ``output_bytes`` the true total. ``error`` explains a failure the exit code does not
    (timeout, cancellation, output limit). ``artifact_problems`` lists entries that were
    skipped or caps that stopped collection; the artifacts listed were stored intact.
    """

    status: RunStatus
    exit_code: int | None
    output: bytes
    output_bytes: int
    output_truncated: bool
    artifacts: tuple[CollectedArtifact, ...] = ()
    artifact_problems: tuple[str, ...] = ()
    error: str | None = None
    container_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageInfo:
    """An image on the engine: its id, labels, creation time (Unix seconds) and size."""

    image_id: str
    labels: Mapping[str, str]
    created: float
    size: int


class ImageEngine(Protocol):
    """The engine's images, for image retention (``jobrunner.image_retention``)."""

    async def labelled_images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        """The images (final ones, not their steps') carrying every one of ``labels``."""
        ...

    async def remove_image(self, image_id: str) -> bool:
        """Remove an image, never forced: one a container uses, or that another image builds
        on, stays. Whether it was removed (``False`` also when it was gone already)."""
        ...

    async def remove_build_leftovers(self) -> list[str]:
        """Remove the images made by the steps of builds whose process died; their ids."""
        ...

    async def prune_build_cache(self, keep_bytes: int) -> int:
        """Shrink the engine's build cache to at most ``keep_bytes``; the bytes freed."""
        ...


class ContainerEngine(Protocol):
    """Builds and runs job containers. Implementations are safe to share between tasks."""

    async def ping(self) -> None:
        """Check that the engine answers; raises ``EngineUnavailable`` if it does not."""
        ...

    async def cached_image(self, digest: str, *, scope: str | None = None) -> str | None:
        """The image built for ``digest`` (labelled ``longshore.source-digest=<digest>`` and,
        when ``scope`` is given, ``longshore.scope=<scope>``), if there is one. A rerun of an
        unchanged source asks only this: nothing is parsed, checked or built again.

        Raises ``EngineUnavailable`` when the engine fails."""
        ...

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
        """Return an image for the source identified by ``digest``.

        If :meth:`cached_image` finds one (of ``labels``' ``longshore.scope``, when they
        carry one) it is reused (``cached=True``, nothing is built). Otherwise the tar
        (plain or compressed) is the build context as is, ``dockerfile`` a path inside it,
        built as ``spec`` says (default: no base image checks, no limits, no network,
        the engine's build timeout); the engine never pulls an image on its own; the image
        carries ``labels`` plus ``longshore.source-digest``. At ``spec.timeout_seconds``,
        or when ``cancel`` is set, the build is stopped and the result says so; a stopped
        or failed build leaves no container and no image of its own behind.

        Raises ``BuildFailed`` (permanent) when the Dockerfile or context does not build —
        its message ends with the tail of the build log —, ``SourceRejected`` or
        ``FetchFailed`` for a base image (see the module docstring), and
        ``EngineUnavailable`` when the engine fails.
        """
        ...

    async def run(
        self,
        spec: RunSpec,
        on_output: OutputCallback | None,
        cancel: asyncio.Event,
    ) -> RunResult:
        """Run a container of ``spec.image`` to its end and return the outcome.

        Guarantees: the container runs with no network (unless ``spec.network``), every
        capability dropped, ``no-new-privileges``, a read-only root with a writable ``/tmp``,
        the memory/CPU/pids limits, no privileged mode and no host mounts. Output (stdout
        and stderr merged in the order the engine delivers them) goes to ``on_output`` live
        and is retained head + tail. ``cancel`` being set stops the container and the run
        ends ``cancelled``. The container is removed before this returns or raises, even
        when the awaiting task is cancelled (that removal is shielded).

        Raises ``EngineUnavailable`` when the engine fails; whatever ``on_output`` raises
        propagates after the container is removed.
        """
        ...

    async def cleanup_orphans(
        self, owned_run_ids: set[str], *, only_labels: Mapping[str, str] | None = None
    ) -> list[str]:
        """Stop and remove every container labelled ``longshore.run`` whose run id is not in
        ``owned_run_ids`` (with its artifacts volume); return the ids of those removed.

        ``owned_run_ids`` must hold every run still alive on this engine, whichever worker
        runs it; ``only_labels`` narrows the sweep to containers also carrying these labels
        (e.g. one worker's, or one test's)."""
        ...

    async def run_containers(self, labels: Mapping[str, str]) -> set[str]:
        """The run ids (``longshore.run``) of every container, running or not, that carries
        ``labels``. Raises ``EngineUnavailable`` when the engine fails."""
        ...

    def close(self) -> None:
        """Release the engine's connections."""
        ...
