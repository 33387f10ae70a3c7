"""The container engine contract: build an image from a verified context, run it safely.

``ContainerEngine`` is written once here; ``jobrunner.docker_engine.DockerEngine`` implements
it against the Docker engine. The runner depends on this protocol only, so it can be driven
by a fake in unit tests; integration tests use the real engine.

Errors raised (see ``jobrunner.errors``):

- ``EngineUnavailable`` — the engine cannot be reached or failed to do its part (retry later).
- ``BuildFailed`` — the job's own Dockerfile/context does not build (permanent: the same
  source will fail the same way, so retrying cannot help).

A run never raises for what the *job* did (non-zero exit, timeout, cancellation, too much
output, artifacts over their caps): those are outcomes recorded in ``RunResult``.
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
    """

    image: str
    command: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
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


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildResult:
    """An image ready to run: its id, whether it was reused, and the (bounded) build log."""

    image_id: str
    cached: bool
    log: str


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


class ContainerEngine(Protocol):
    """Builds and runs job containers. Implementations are safe to share between tasks."""

    async def ping(self) -> None:
        """Check that the engine answers; raises ``EngineUnavailable`` if it does not."""
        ...

    async def build(
        self,
        context_tar: Path,
        dockerfile: str,
        digest: str,
        labels: Mapping[str, str],
        *,
        network: str = "none",
    ) -> BuildResult:
        """Return an image for the source identified by ``digest``.

        If an image labelled ``longshore.source-digest=<digest>`` exists it is reused
        (``cached=True``, nothing is built). Otherwise the tar (plain or compressed) is the
        build context as is, ``dockerfile`` a path inside it; base images are never pulled;
        the image carries ``labels`` plus ``longshore.source-digest``. ``network`` is the
        network of ``RUN`` steps (``"none"`` by default).

        Raises ``BuildFailed`` (permanent) when the Dockerfile or context does not build —
        its message ends with the tail of the build log — and ``EngineUnavailable`` when the
        engine fails.
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

    def close(self) -> None:
        """Release the engine's connections."""
        ...
