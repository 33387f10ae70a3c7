"""Fixtures for acceptance tests: the installed ``longshore`` command run in subprocesses.

``longshore`` (a :class:`Longshore`) runs commands against a fresh store on the backend under
test (``backend`` from ``tests/conftest.py``: the embedded SQLite store in a temporary data
dir, or a fresh PostgreSQL database), with short leases so that recovery happens in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Leases short enough that a killed worker's tasks come back within seconds.
FAST_RECOVERY_ENV = {
    "WORKER_LEASE_SECONDS": "2",
    "WORKER_STALE_WORKER_SECONDS": "3",
    "WORKER_POLL_INTERVAL_SECONDS": "0.2",
    "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
}
COMMAND_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def longshore_command() -> Path:
    """The installed console script: next to this interpreter, else on ``PATH``."""
    beside = Path(sys.executable).parent / "longshore"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("longshore")
    if found is None:
        pytest.fail(
            f"the `longshore` command is not installed (looked in {beside.parent} and on PATH); "
            "run scripts/setup (pip install -e .) first",
            pytrace=False,
        )
    return Path(found)


def clean_environment() -> dict[str, str]:
    """This process's environment without any Longshore setting that could leak in."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(("WORKER_", "LONGSHORE_"))
    }


@dataclass
class Longshore:
    """Runs ``longshore`` subcommands with one environment; kills what it started."""

    command: Path
    env: dict[str, str]
    logs: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to its end and return it (whatever its exit status); ``input`` is
        its standard input."""
        return subprocess.run(
            [str(self.command), *args],
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, **kwargs: Any) -> str:
        """Run a command that must succeed; return its stdout."""
        proc = self.run(*args, **kwargs)
        assert proc.returncode == 0, (
            f"`longshore {' '.join(args)}` exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
        return proc.stdout

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kwargs))

    def start(self, *args: str, name: str, env: dict[str, str] | None = None) -> Process:
        """Start a long-running command (output to files under ``logs``)."""
        out = (self.logs / f"{name}.out").open("wb")
        err = (self.logs / f"{name}.err").open("wb")
        try:
            popen = subprocess.Popen(
                [str(self.command), *args],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=err,
            )
        finally:
            out.close()
            err.close()
        self.started.append(popen)
        return Process(popen=popen, name=name, logs=self.logs)

    def stats(self) -> dict[str, int]:
        """``tasks stats --json`` summed over every queue."""
        data = self.json("tasks", "stats")
        keys = ("ready", "scheduled", "running", "dead", "completed", "failed")
        return {key: sum(queue[key] for queue in data["queues"]) for key in keys}

    def kill_all(self) -> None:
        for popen in self.started:
            if popen.poll() is None:
                popen.kill()
                popen.wait(timeout=10)


@dataclass
class Process:
    """A started ``longshore`` process."""

    popen: subprocess.Popen[bytes]
    name: str
    logs: Path

    def output(self) -> str:
        out = (self.logs / f"{self.name}.out").read_text(errors="replace")
        err = (self.logs / f"{self.name}.err").read_text(errors="replace")
        return f"--- stdout of {self.name}\n{out}\n--- stderr of {self.name}\n{err[-4000:]}"

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = COMMAND_TIMEOUT) -> int:
        """Wait for the process to exit and return its status."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s\n{self.output()}"
            ) from None

    def assert_running(self) -> None:
        status = self.popen.poll()
        assert status is None, f"{self.name} exited early with {status}\n{self.output()}"


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = 60.0, interval: float = 0.2
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """``WORKER_DATABASE_URL`` for the backend under test (``None``: the embedded store)."""
    if backend == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_database_url"))


@pytest.fixture
def longshore(
    longshore_command: Path, store_url: str | None, tmp_path: Path
) -> Iterator[Longshore]:
    """The ``longshore`` command on a fresh store of the backend under test."""
    env = clean_environment()
    env.update(FAST_RECOVERY_ENV)
    env["WORKER_DATA_DIR"] = str(tmp_path / "data")
    if store_url is not None:
        env["WORKER_DATABASE_URL"] = store_url
    logs = tmp_path / "logs"
    logs.mkdir()
    cli = Longshore(command=longshore_command, env=env, logs=logs)
    try:
        yield cli
    finally:
        cli.kill_all()
