"""The cache of git source archives: a rerun of an unchanged tag fetches nothing.

Archives are stored content-addressed in a :class:`~jobrunner.cache.DownloadCache` under
``<git_cache_dir>/objects/`` (verified by re-hashing when copied out), and
``repos/<sha256 of the repo URL>/<commit sha>`` holds the SHA256 of the archive made from that
commit of that repository. An entry is only written after a fetch whose ``rev-parse`` matched
the advertised commit, so a hit always names a commit this runner has archived from the same
URL. No eviction; delete the directory to reclaim space.

Every function blocks on file I/O; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path

from jobrunner.cache import DownloadCache
from jobrunner.config import RunnerConfig

__all__ = ["cache_lookup", "cache_store", "git_cache_dir"]


def git_cache_dir(config: RunnerConfig) -> Path:
    """Where source archives of fetched commits are cached."""
    return config.work_dir / "git-cache"


def _index_path(config: RunnerConfig, repo: str, commit: str) -> Path:
    repo_key = hashlib.sha256(repo.encode("utf-8")).hexdigest()
    return git_cache_dir(config) / "repos" / repo_key / commit


def cache_lookup(
    config: RunnerConfig, repo: str, commit: str, dest: Path
) -> tuple[str, int] | None:
    """Copy the cached archive of ``commit`` to ``dest``; its SHA256 and size, or None."""
    try:
        recorded = _index_path(config, repo, commit).read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", recorded):
        return None
    size = DownloadCache(git_cache_dir(config) / "objects").copy_out(recorded, dest)
    return None if size is None else (recorded, size)


def cache_store(config: RunnerConfig, repo: str, commit: str, src: Path, sha256: str) -> None:
    """Store the archive ``src`` (whose SHA256 is ``sha256``) as that of ``commit``."""
    DownloadCache(git_cache_dir(config) / "objects").store(src, sha256)
    index = _index_path(config, repo, commit)
    index.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = index.parent / f".tmp-{secrets.token_hex(8)}"
    try:
        tmp.write_text(sha256 + "\n", "ascii")
        os.replace(tmp, index)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
