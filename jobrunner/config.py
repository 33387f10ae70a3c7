"""The job runner's settings as plain values (built by ``service`` from ``WORKER_JOB_*``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class SourceLimits:
    """Caps applied to untrusted archives, entry by entry (``WORKER_JOB_ARCHIVE_*``): the
    entry count, each file's size and the total of the file sizes, uncompressed."""

    max_entries: int = 10_000
    max_file_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024


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
