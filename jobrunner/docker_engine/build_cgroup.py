"""A pids limit for the ``RUN`` steps of a build, through a cgroup parent.

The engine's build API takes memory and CPU limits for the containers of ``RUN`` steps, but
no pids limit: a fork bomb in a ``RUN`` would be bounded by nothing but the host. It does
take a *cgroup parent*, under which the engine makes each step's cgroup, and the kernel's
pids controller counts every process below a cgroup against that cgroup's ``pids.max``. So
each build gets a cgroup of its own, ``<root>/pids/longshore-builds/<name>``, whose
``pids.max`` is the job's ``pidsLimit``, and is built with that cgroup parent.

This needs what only a process on the engine's own host can have: the engine using the
``cgroupfs`` cgroup driver on cgroup v1 (with the ``systemd`` driver a parent must be a
systemd slice, which cannot be given a pids limit from here; cgroup v2 hosts are not
supported yet), and the cgroup file system at ``root`` (``WORKER_JOB_BUILD_CGROUP_ROOT``,
``/sys/fs/cgroup``) writable. When any of it is missing, builds run without a pids limit
and :meth:`BuildCgroups.create` says why (the reason is logged and put in the build log);
docs/security.md says what is bounded then.

Everything here blocks on the file system; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

DEFAULT_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")

PARENT: Final = "longshore-builds"
"""The cgroup (in every hierarchy) under which the builds' own cgroups are made."""


class BuildCgroups:
    """Makes and removes the per-build cgroups of one engine (see the module docstring)."""

    def __init__(self, root: Path | None) -> None:
        self._root = root
        self._unusable: str | None = None if root is not None else "turned off"
        self._checked = root is None

    def check_engine(self, info: dict[str, Any]) -> None:
        """Decide once, from the engine's ``info``, whether cgroup parents can carry the
        pids limit."""
        if self._checked:
            return
        self._checked = True
        driver = info.get("CgroupDriver")
        version = str(info.get("CgroupVersion") or "1")
        pids = None if self._root is None else self._root / "pids"
        if driver != "cgroupfs":
            self._unusable = f"the engine's cgroup driver is {driver!r}, not 'cgroupfs'"
        elif version != "1":
            self._unusable = f"the engine uses cgroup v{version}"
        elif pids is None or not (pids / "cgroup.procs").is_file():
            self._unusable = f"no pids cgroup hierarchy at {pids}"
        elif not os.access(pids, os.W_OK):
            self._unusable = f"{pids} is not writable"
        if self._unusable is not None:
            logger.warning("build steps will have no pids limit", extra={"reason": self._unusable})

    @property
    def checked(self) -> bool:
        return self._checked

    def create(self, name: str, pids_limit: int) -> tuple[str | None, str | None]:
        """The cgroup parent of a build limited to ``pids_limit`` processes, or ``None`` and
        the reason why there is none."""
        if self._unusable is not None or self._root is None:
            return None, self._unusable
        directory = self._root / "pids" / PARENT / name
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "pids.max").write_text(f"{pids_limit}\n")
        except OSError as exc:
            self.remove(name)
            return None, f"cannot make the build's pids cgroup: {exc}"
        return f"/{PARENT}/{name}", None

    def remove(self, name: str) -> None:
        """Remove the build's cgroup from every hierarchy the engine made it in (the
        engine makes the parent everywhere; each step's own cgroup below it is the
        engine's to remove with the step's container). A directory still busy stays."""
        if self._root is None:
            return
        try:
            hierarchies = list(self._root.iterdir())
        except OSError:
            return
        for hierarchy in hierarchies:
            directory = hierarchy / PARENT / name
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                try:
                    directory.rmdir()
                except OSError as exc:
                    logger.warning(
                        "cannot remove a build cgroup",
                        extra={"path": str(directory), "error": str(exc)},
                    )
