"""Durability under crashes: a ``kill -9``'d worker and a restarted PostgreSQL lose no task."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import Longshore, wait_until
from tests.conftest import ROOT, only_postgres

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_killed_worker_loses_no_task(longshore: Longshore):
    longshore.ok(
        "tasks", "enqueue", "builtin.sleep", "--count", "200", "--payload", '{"seconds": 0.2}'
    )
    assert longshore.stats()["ready"] == 200

    victim = longshore.start("worker", "--concurrency", "8", name="victim")
    wait_until(
        lambda: longshore.stats()["completed"] >= 16,
        "the first worker completes some tasks",
    )
    victim.assert_running()
    victim.popen.send_signal(signal.SIGKILL)
    victim.wait()
    before = longshore.stats()
    assert before["completed"] < 200, "the worker finished everything before it was killed"
    assert before["running"] > 0, "the kill left no task mid-run; the test proves nothing"

    survivor = longshore.start("worker", "--drain", name="survivor")
    status = survivor.wait(timeout=90)
    assert status == 0, survivor.output()

    after = longshore.stats()
    # Completions are recorded once per task (an unrecorded completion is re-run, not
    # counted twice), and every task is gone from the queue.
    assert after["completed"] == 200, after
    assert (after["ready"], after["scheduled"], after["running"], after["dead"]) == (0, 0, 0, 0)
    assert longshore.json("tasks", "list", "--state", "running")["tasks"] == []
    assert longshore.json("tasks", "list")["total"] == 0


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A PostgreSQL cluster of this test's own (so restarting it disturbs no other test):
    its URL and data directory. Stopped when the test ends."""
    if not (PG_BIN / "pg_ctl").exists():
        pytest.fail(f"PostgreSQL server binaries are missing from {PG_BIN}", pytrace=False)
    data_dir = tmp_path / "pgdata"
    port = _free_port()
    proc = subprocess.run(
        [str(ROOT / "scripts" / "postgres-up"), str(data_dir), str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"could not start a private PostgreSQL cluster: {proc.stderr}", pytrace=False)
    url = proc.stdout.strip().splitlines()[-1]
    try:
        yield url, data_dir
    finally:
        _stop_cluster(data_dir)


def _pg_ctl(data_dir: Path, *args: str) -> int:
    """Run ``pg_ctl`` on ``data_dir``; the server's own output goes to its log file (never
    to a pipe of ours, which the server would hold open)."""
    return subprocess.run(
        _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "server.log"), *args
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=90,
        check=False,
    ).returncode


def _stop_cluster(data_dir: Path) -> None:
    if _pg_ctl(data_dir, "stop", "-m", "immediate", "-w") == 0:
        return
    pid_file = data_dir / "postmaster.pid"
    if pid_file.exists():  # pg_ctl could not stop it: end the server we started by its id
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)


@pytest.mark.slow
@only_postgres
def test_a_worker_rides_out_a_postgres_restart(
    longshore: Longshore, private_postgres: tuple[str, Path]
):
    url, data_dir = private_postgres
    longshore.env["WORKER_DATABASE_URL"] = url
    longshore.ok("migrate")
    longshore.ok(
        "tasks", "enqueue", "builtin.sleep", "--count", "300", "--payload", '{"seconds": 0.2}'
    )

    worker = longshore.start("worker", "--concurrency", "8", "--drain", name="worker")
    wait_until(lambda: longshore.stats()["completed"] >= 30, "the worker completes some tasks")
    worker.assert_running()

    status = _pg_ctl(data_dir, "restart", "-m", "fast", "-w", "-t", "60")
    log = (data_dir / "server.log").read_text(errors="replace")[-2000:]
    assert status == 0, f"pg_ctl restart failed (exit {status}); server log:\n{log}"
    assert longshore.stats()["completed"] < 300, "the worker was done before the restart"

    # The worker is never restarted: it must reconnect and finish on its own.
    status = worker.wait(timeout=90)
    assert status == 0, worker.output()
    after = longshore.stats()
    assert after["completed"] == 300, after
    assert (after["ready"], after["scheduled"], after["running"], after["dead"]) == (0, 0, 0, 0)
    assert longshore.json("dlq", "list")["total"] == 0
