"""Where the running code came from, for ``GET /health``: the version, the source revision
(``commit``) and when it was built or installed (``buildTime``, RFC 3339).

Read once when the service starts; the first source that knows wins:

1. ``LONGSHORE_BUILD_COMMIT`` and ``LONGSHORE_BUILD_TIME``, which the image build sets from
   its build arguments (see the Dockerfile and docs/deployment.md).
2. For the commit, the source checkout the code runs from, when it is one:
   ``git rev-parse HEAD`` run with a fixed argument list, an environment built from nothing
   (no user or system git configuration) and a short deadline.
3. The installed distribution's metadata: the commit pip records for an install from a git
   URL (``direct_url.json``), and the time the distribution was installed.

What none of them knows stays ``""``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Final

DISTRIBUTION: Final = "longshore"
COMMIT_VARIABLE: Final = "LONGSHORE_BUILD_COMMIT"
TIME_VARIABLE: Final = "LONGSHORE_BUILD_TIME"
GIT_TIMEOUT_SECONDS: Final = 5.0

_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_SOURCE_ROOT: Final = Path(__file__).resolve().parents[1]
"""The directory holding the ``service`` package: a checkout's root when run from one."""


@dataclass(frozen=True, kw_only=True)
class BuildInfo:
    version: str
    commit: str
    build_time: str


def build_info(environ: Mapping[str, str] | None = None) -> BuildInfo:
    """This build's version, commit and build time (see the module docstring)."""
    env = os.environ if environ is None else environ
    try:
        dist: metadata.Distribution | None = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        dist = None
    version = "0.0.0" if dist is None else dist.version
    commit = env.get(COMMIT_VARIABLE, "").strip()
    if not commit:
        commit = checkout_commit(_SOURCE_ROOT) or _recorded_commit(dist)
    build_time = env.get(TIME_VARIABLE, "").strip() or _installed_at(dist)
    return BuildInfo(version=version, commit=commit, build_time=build_time)


def checkout_commit(root: Path) -> str:
    """The commit checked out at ``root`` if it is a git checkout (``""`` otherwise, or
    when git is missing, refuses the directory or takes too long)."""
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return ""
    clean_env = {
        "PATH": os.defpath,
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
    }
    try:
        done = subprocess.run(  # noqa: S603 - fixed argument list, no shell, clean environment
            [git, "-C", str(root), "rev-parse", "--verify", "HEAD"],
            env=clean_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and _COMMIT.fullmatch(commit) else ""


def _recorded_commit(dist: metadata.Distribution | None) -> str:
    """The commit pip recorded when installing from a git URL (PEP 610)."""
    text = None if dist is None else dist.read_text("direct_url.json")
    if not text:
        return ""
    try:
        commit = json.loads(text).get("vcs_info", {}).get("commit_id", "")
    except (ValueError, AttributeError):
        return ""
    return commit if isinstance(commit, str) and _COMMIT.fullmatch(commit) else ""


def _installed_at(dist: metadata.Distribution | None) -> str:
    """When the distribution was installed: the time its ``METADATA`` file was written."""
    if dist is None:
        return ""
    # An installed distribution has ``*.dist-info/METADATA``; a source checkout on the path
    # (an editable install run from its root) has ``*.egg-info/PKG-INFO``.
    for file in dist.files or ():
        if (file.name, file.parent.suffix) in (
            ("METADATA", ".dist-info"),
            ("PKG-INFO", ".egg-info"),
        ):
            try:
                written = Path(str(dist.locate_file(file))).stat().st_mtime
            except OSError:
                return ""
            moment = datetime.fromtimestamp(int(written), tz=UTC)
            return moment.isoformat().replace("+00:00", "Z")
    return ""
