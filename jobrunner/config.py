"""The job runner's settings as plain values (built by ``service`` from ``WORKER_JOB_*``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jobrunner.engine import ArtifactLimits

DEFAULT_USER = "65534:65534"
"""Who a job's container runs as unless its definition names a user: ``nobody``, by number
(an image need not have an ``/etc/passwd`` entry for it)."""


@dataclass(frozen=True, kw_only=True)
class SourceLimits:
    """Caps applied to untrusted archives, entry by entry (``WORKER_JOB_ARCHIVE_*``): the
    entry count, each file's size and the total of the file sizes, uncompressed."""

    max_entries: int = 10_000
    max_file_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class JobCeilings:
    """The most any definition may ask for (``WORKER_JOB_MAX_*``): above them a definition is
    refused naming the field, when saved and when run."""

    max_memory_mb: int = 8192
    max_cpus: float = 4.0
    max_pids: int = 4096
    max_timeout_seconds: int = 86_400


@dataclass(frozen=True, kw_only=True)
class BuildPolicy:
    """What a job's Dockerfile may build from (``jobrunner.build_policy``).

    - ``base_images``: patterns of the images ``FROM``, ``COPY --from`` and
      ``RUN --mount=from=`` may name besides earlier stages (``WORKER_JOB_BASE_IMAGES``;
      ``*`` admits any image by name, never by id or digest);
    - ``pull``: ``never`` refuses a base that is not on the engine; ``missing`` pulls it
      once, with ``pull_timeout`` (``WORKER_JOB_PULL``, ``WORKER_JOB_PULL_TIMEOUT``).
    """

    base_images: tuple[str, ...] = ("*",)
    pull: Literal["never", "missing"] = "never"
    pull_timeout: float = 300.0


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """What the runner may fetch, from where, and how much.

    - ``repo_allowlist``: repository URLs (or ``*``) a git source may use; an entry matches
      the whole URL, or a prefix ending in ``/`` (``https://git.example.com/team/``).
    - ``tarball_allowlist``: host names a tarball URL (and every redirect hop) may use.
    - ``allow_private_hosts``: allow sources resolving to loopback/private/link-local
      addresses (off by default, against SSRF; on for a private git server or tests).
    - ``ca_file``: an extra CA bundle trusted for git and tarball HTTPS.
    - ``allow_http``: allow plain ``http://`` sources (off by default).
    - ``tarball_cache_dir``: where verified downloads are cached by SHA256 (default
      ``work_dir / "tarball-cache"``).
    - ``tarball_max_redirects``: redirects a tarball download may follow, each hop checked.
    - ``ceilings``: the most a definition may ask for; ``build``: what images may build from;
      ``artifact_limits``: the caps on what a run leaves in its artifacts directory.
    """

    work_dir: Path
    repo_allowlist: tuple[str, ...] = ()
    tarball_allowlist: tuple[str, ...] = ()
    tarball_dir: Path | None = None
    tarball_max_bytes: int = 64 * 1024 * 1024
    tarball_timeout: float = 30.0
    git_timeout: float = 120.0
    ca_file: Path | None = None
    allow_private_hosts: bool = False
    allow_http: bool = False
    network_allowlist: tuple[str, ...] = ()
    output_bytes: int = 1024 * 1024
    archive_limits: SourceLimits = field(default_factory=SourceLimits)
    tarball_cache_dir: Path | None = None
    tarball_max_redirects: int = 5
    ceilings: JobCeilings = field(default_factory=JobCeilings)
    build: BuildPolicy = field(default_factory=BuildPolicy)
    artifact_limits: ArtifactLimits = field(default_factory=ArtifactLimits)


def deployment_scope(work_dir: Path) -> str:
    """The scope (``longshore.scope`` label) of the containers and images made by runners
    sharing ``work_dir``, i.e. one deployment: what its sweeps and image retention may
    remove. Runners of other stores on the same engine have other scopes."""
    return hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:16]
