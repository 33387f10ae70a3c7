"""Crash leftovers: what a killed process left on disk that no live run owns.

A run works in ``<work dir>/runs/<run id>/`` (its fetched source, ``.copy-*.part`` and
``.download-*.part`` files, its build context) and removes it when it ends; a process killed
mid-run leaves it behind, and a blob being written leaves ``<artifacts>/tmp/blob-*``. This
module removes:

- every run directory whose run is not unfinished in the run store (final, or deleted by
  retention, or never recorded). The directories are listed *before* the unfinished runs are
  read: a run is recorded before its directory is made, so a directory seen in the listing
  whose run is under way is always among the unfinished runs read after. A run directory is
  shared by every process using the same work directory, and so is this rule;
- temporary blobs whose writer is gone (see :meth:`ArtifactStore.remove_abandoned
  <store.artifacts.ArtifactStore.remove_abandoned>`);
- ``.tmp-*.part`` files of the download cache older than :data:`CACHE_PART_MAX_AGE` (a
  download takes at most ``WORKER_JOB_TARBALL_TIMEOUT``).

Runs whose worker died are ended by the sweep of interrupted runs; their directories go at
the next pass after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from store.artifacts import ArtifactStore
from store.jobs.protocol import RunStore

TEMPORARY_MIN_AGE = timedelta(minutes=1)
"""A temporary blob this recent is spared even unlocked: its writer may be about to lock it."""
CACHE_PART_MAX_AGE = timedelta(hours=1)


@dataclass(frozen=True, kw_only=True)
class LeftoversReport:
    """What one pass removed."""

    run_dirs: int
    temporary_files: int
    bytes_freed: int


async def remove_leftovers(
    *, work_dir: Path, cache_dir: Path, artifacts: ArtifactStore, runs: RunStore
) -> LeftoversReport:
    """Remove the leftovers described in the module docstring."""
    runs_dir = work_dir / "runs"
    listed = await asyncio.to_thread(_list_dirs, runs_dir)
    if listed:
        live = {run.run_id for run in await runs.active_runs()}
        listed = [path for path in listed if path.name not in live]
    now = time.time()
    dirs_freed = await asyncio.to_thread(_remove_dirs, listed)
    files, blob_bytes = await asyncio.to_thread(
        artifacts.remove_abandoned, older_than=now - TEMPORARY_MIN_AGE.total_seconds()
    )
    parts, part_bytes = await asyncio.to_thread(
        _remove_old_parts, cache_dir, now - CACHE_PART_MAX_AGE.total_seconds()
    )
    return LeftoversReport(
        run_dirs=len(listed),
        temporary_files=files + parts,
        bytes_freed=dirs_freed + blob_bytes + part_bytes,
    )


def _list_dirs(root: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(root) if entry.is_dir()]
    except FileNotFoundError:
        return []


def _remove_dirs(paths: list[Path]) -> int:
    freed = 0
    for path in paths:
        freed += _size(path)
        shutil.rmtree(path, ignore_errors=True)
    return freed


def _size(path: Path) -> int:
    total = 0
    for folder, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _remove_old_parts(cache_dir: Path, older_than: float) -> tuple[int, int]:
    count = freed = 0
    for part in cache_dir.glob("*/.tmp-*.part"):
        try:
            status = part.lstat()
            if status.st_mtime < older_than:
                part.unlink()
                count, freed = count + 1, freed + status.st_size
        except OSError:
            continue
    return count, freed
