"""A Docker engine that cannot be reached does not dead-letter runs: ``serve`` starts with
``DOCKER_HOST`` at a unix socket where nothing listens, 20 runs of a job with ``retries: 0``
are enqueued and wait (``RunWaiting`` events, the ``longshore_runs_waiting`` metric); then
the engine "comes back" (a forwarder to the real engine's socket starts on that very path)
and every run succeeds in its first attempt, with nothing in the dead-letter queue."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobrunner.engine import LABEL_JOB
from store.events.file import FileEventStore
from store.events.options import EventStoreOptions
from tests.acceptance.conftest import Longshore, wait_until
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.acceptance.test_serve_crash import define_job
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True),
]

RUNS = 20


def real_engine_socket() -> Path:
    """The unix socket of the engine the tests use (``DOCKER_HOST`` or the default)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    scheme, _, path = host.partition("://")
    if scheme not in ("unix", "http+unix"):
        pytest.fail(f"this test needs a unix-socket Docker engine, DOCKER_HOST is {host!r}")
    return Path("/" + path.lstrip("/"))


class Forwarder:
    """Accepts connections on ``path`` and pipes each, both ways, to ``target``."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path = path
        self.target = target
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.sockets: list[socket.socket] = [self.server]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(str(self.target))
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for the socket (a unix socket path is at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ls-engine-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def job() -> Iterator[str]:
    name = f"outage-{uuid.uuid4().hex[:10]}"
    yield name
    api = docker_client()
    for container in api.containers(all=True, filters={"label": f"{LABEL_JOB}={name}"}):
        api.remove_container(container["Id"], force=True, v=True)
    for image in api.images(filters={"label": f"{LABEL_JOB}={name}"}):
        with contextlib.suppress(Exception):
            api.remove_image(image["Id"], force=True)


def job_tarball(tmp_path: Path) -> Path:
    import io
    import tarfile

    files = {
        "Dockerfile": f'FROM {BUSYBOX_IMAGE}\nCMD ["echo", "engine is back"]\n',
    }
    path = tmp_path / "tarballs" / "job.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"job/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def waiting_metric(text: str) -> int:
    match = re.search(r'^longshore_runs_waiting\{reason="engine"\} (\S+)$', text, re.M)
    return 0 if match is None else int(float(match.group(1)))


def run_events(directory: Path, run_id: str) -> list[Any]:
    async def read() -> list[Any]:
        store = await FileEventStore.open(EventStoreOptions(directory=directory))
        try:
            return list(await store.by_run(run_id))
        finally:
            await store.close()

    return asyncio.run(read())


def test_runs_enqueued_while_the_engine_is_unreachable_all_succeed_once_it_answers(
    longshore: Longshore, tmp_path: Path, socket_dir: Path, job: str
):
    ensure_busybox_image(docker_client())
    engine_socket = real_engine_socket()
    dead = socket_dir / "docker.sock"
    # A socket where nothing listens: bound, never listening (connections are refused).
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(dead))
    tarball = job_tarball(tmp_path)
    port = free_port()
    longshore.env.update(
        {
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_JOB_TARBALL_DIR": str(tarball.parent),
            "DOCKER_HOST": f"unix://{dead}",
            "WORKER_INFRA_RETRY_SECONDS": "5m",
        }
    )
    server = start_serve(longshore, "serve", {})
    forwarder: Forwarder | None = None
    try:
        wait_listening(server, port)
        token = (tmp_path / "data" / "admin-token").read_text().strip()
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/admin/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        define_job(longshore, tmp_path, job, retries=0)
        run_ids = []
        for _ in range(RUNS):
            started = api.post(f"/jobs/{job}/run")
            assert started.status_code == 200, started.text
            run_ids.append(started.json()["runId"])

        # The engine is down: runs wait for it, and say so; nothing fails or dead-letters.
        def waiting() -> bool:
            text = api.get("/metrics/prometheus").text
            return waiting_metric(text) >= 1

        wait_until(waiting, "runs wait for the engine (longshore_runs_waiting)", timeout=60)
        time.sleep(8.0)  # several backoff rounds while it is down
        shown = [api.get(f"/runs/{run_id}").json()["run"] for run_id in run_ids]
        statuses = {run["status"] for run in shown}
        assert statuses <= {"queued", "fetching", "building"}, statuses
        details = {run["statusDetail"] for run in shown}
        assert "waiting for the engine" in details, details
        assert details <= {"waiting for the engine", None}, details
        shown_text = longshore.ok(
            "runs", "show", next(run["runId"] for run in shown if run["statusDetail"] is not None)
        )
        assert "waiting for the engine" in shown_text
        assert longshore.json("dlq", "list")["total"] == 0

        # The engine answers again, on the same socket path.
        silent.close()
        dead.unlink()
        forwarder = Forwarder(dead, engine_socket)

        def all_done() -> bool:
            runs = [api.get(f"/runs/{run_id}").json()["run"] for run_id in run_ids]
            return all(run["status"] in ("succeeded", "failed", "cancelled") for run in runs)

        wait_until(all_done, "every run ends once the engine answers", timeout=240, interval=1)
        runs = [api.get(f"/runs/{run_id}").json()["run"] for run_id in run_ids]
        assert [run["status"] for run in runs] == ["succeeded"] * RUNS, [
            (run["status"], run["error"]) for run in runs
        ]
        assert {run["attempt"] for run in runs} == {1}
        assert {run["statusDetail"] for run in runs} == {None}
        assert len(longshore.json("runs", "list", "--job", job, "--limit", "100")["runs"]) == RUNS
        assert longshore.json("jobs", "show", job)["retries"] == 0
        assert longshore.json("dlq", "list")["total"] == 0
        stats = longshore.stats()
        assert (stats["dead"], stats["failed"], stats["completed"]) == (0, 0, RUNS), stats
        assert waiting_metric(api.get("/metrics/prometheus").text) == 0
        api.close()
        stop(server)
    finally:
        if server.popen.poll() is None:
            server.popen.kill()
            server.popen.wait()
        if forwarder is not None:
            forwarder.close()
        silent.close()

    events = tmp_path / "data" / "events"
    waited = [
        run_id
        for run_id in run_ids
        if any(
            e.type == "RunWaiting" and e.data["detail"] == "waiting for the engine"
            for e in run_events(events, run_id)
        )
    ]
    assert waited, "no run told that it waited for the engine"
