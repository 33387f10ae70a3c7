"""``kill -9`` of ``longshore serve`` in the middle of a job run, then a restart on the same
data dir and database: the task is retried to completion (no task lost, nothing dead-lettered),
the killed attempt's run ends in a final state and its container is removed, and an events
subscriber that resumes with its last id gets every durable event after it exactly once.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import tarfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobrunner.engine import LABEL_JOB, LABEL_RUN
from store.events import EventType
from store.events.file import FileEventStore
from store.events.options import EventStoreOptions
from tests.acceptance.conftest import Longshore, Process, wait_until
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True),
]

SCRIPT = 'echo "first line"\nsleep 8\necho "second line"\n'


@pytest.fixture(scope="module")
def docker_api() -> Any:
    api = docker_client()
    ensure_busybox_image(api)
    return api


@pytest.fixture
def job(docker_api: Any) -> Iterator[str]:
    """The job's name, unique to the test; its containers are removed at the end whatever
    happened (a failing test must not leave a killed attempt's container behind)."""
    name = f"crash-{uuid.uuid4().hex[:10]}"
    yield name
    for container in docker_api.containers(all=True, filters={"label": f"{LABEL_JOB}={name}"}):
        docker_api.remove_container(container["Id"], force=True, v=True)


def job_tarball() -> bytes:
    files = {
        "Dockerfile": f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n',
        "job.sh": SCRIPT,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"job/{name}")
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class EventsListener:
    """Reads ``GET /admin/v1/events`` in a thread, keeping every event that has an id."""

    def __init__(self, url: str, token: str, last_id: int | None = None) -> None:
        self.headers = {"Authorization": f"Bearer {token}"}
        if last_id is not None:
            self.headers["Last-Event-ID"] = str(last_id)
        self.url = url
        self.events: list[tuple[int, str, Any]] = []
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> EventsListener:
        self._thread.start()
        assert self.connected.wait(20), f"the events stream did not open: {self.failure!r}"
        return self

    def _run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError:
            pass  # the server went away (killed or stopped): the stream ends
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.failure = exc
        finally:
            self.ended.set()

    def _read(self) -> None:
        timeout = httpx.Timeout(10.0, read=None)
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            assert response.status_code == 200, response.read()
            self.connected.set()
            name, event_id, data = "message", None, []
            for line in response.iter_lines():
                if not line:
                    if data and event_id is not None:
                        self.events.append((int(event_id), name, json.loads("\n".join(data))))
                    name, event_id, data = "message", None, []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))

    def ids(self) -> list[int]:
        return [event_id for event_id, _, _ in list(self.events)]

    def saw(self, name: str, run_id: str) -> bool:
        return any(
            kind == name and data.get("runId") == run_id for _, kind, data in list(self.events)
        )


def stored_ids_after(directory: Path, after_id: int) -> list[int]:
    """The ids of every durable event after ``after_id`` that the stream sends (run output
    only to followers, so it is left out)."""

    async def read() -> list[int]:
        store = await FileEventStore.open(EventStoreOptions(directory=directory))
        try:
            ids: list[int] = []
            cursor = after_id
            while batch := await store.since(cursor, limit=1000):
                ids.extend(e.id for e in batch if e.type != EventType.RUN_OUTPUT_EMITTED)
                cursor = batch[-1].id
            return ids
        finally:
            await store.close()

    return asyncio.run(read())


@dataclass
class Crashed:
    """A ``serve`` killed mid-run, started again on the same data dir and database."""

    server: Process
    job: str
    token: str
    events_url: str
    first_run: str
    task_id: str
    last_id: int


def define_job(longshore: Longshore, tmp_path: Path, job: str, *, retries: int) -> None:
    definition = tmp_path / "job.yaml"
    definition.write_text(
        f"name: {job}\nsource: tarball_path\ntarballPath: job.tar.gz\n"
        f"timeoutSeconds: 120\nretries: {retries}\n"
    )
    longshore.ok("jobs", "apply", "-f", str(definition))


def kill_serve_mid_run(
    longshore: Longshore, tmp_path: Path, docker_api: Any, job: str, *, retries: int
) -> Crashed:
    """Start ``serve``, run the job, ``kill -9`` the server while the job's container runs
    (recording the last event id its events stream delivered), start it again."""
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    (tarballs / "job.tar.gz").write_bytes(job_tarball())
    port = free_port()
    longshore.env.update(
        {"WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}", "WORKER_JOB_TARBALL_DIR": str(tarballs)}
    )
    events_url = f"http://127.0.0.1:{port}/admin/v1/events"

    first = start_serve(longshore, "serve-1", {})
    wait_listening(first, port)
    token = (tmp_path / "data" / "admin-token").read_text().strip()
    before = EventsListener(events_url, token).start()
    define_job(longshore, tmp_path, job, retries=retries)
    started = longshore.json("jobs", "run", job)
    first_run, task_id = started["runId"], str(started["taskId"])

    # Mid-run: the container is up and the stream told of the start.
    wait_until(
        lambda: bool(docker_api.containers(filters={"label": f"{LABEL_RUN}={first_run}"})),
        "the first attempt's container is up",
        timeout=90,
    )
    assert longshore.json("runs", "show", first_run)["status"] == "running"
    wait_until(lambda: before.saw("RunStarted", first_run), "RunStarted in the events stream")

    first.signal(signal.SIGKILL)
    first.wait()
    assert before.ended.wait(20), "the events stream outlived the killed server"
    assert before.failure is None, before.failure
    seen_before = before.ids()
    assert seen_before == sorted(set(seen_before)), seen_before
    left_behind = docker_api.containers(all=True, filters={"label": f"{LABEL_RUN}={first_run}"})
    assert left_behind, "the kill took the container with it: the test proves nothing"

    # Start again on the same data dir and database.
    second = start_serve(longshore, "serve-2", {})
    wait_listening(second, port)
    return Crashed(
        server=second,
        job=job,
        token=token,
        events_url=events_url,
        first_run=first_run,
        task_id=task_id,
        last_id=seen_before[-1],
    )


def assert_interrupted_and_removed(longshore: Longshore, docker_api: Any, run_id: str) -> None:
    """The killed attempt's run ends, failed as interrupted, and its container goes."""
    wait_until(
        lambda: longshore.json("runs", "show", run_id)["status"] == "failed",
        "the killed attempt's run is marked failed",
    )
    interrupted = longshore.json("runs", "show", run_id)
    assert "interrupted" in (interrupted["error"] or ""), interrupted
    wait_until(
        lambda: not docker_api.containers(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}),
        "the killed attempt's container is removed",
    )


def test_a_killed_serve_retries_the_run_and_resumed_events_have_no_gap(
    longshore: Longshore, tmp_path: Path, docker_api: Any, job: str
):
    crashed = kill_serve_mid_run(longshore, tmp_path, docker_api, job, retries=2)
    first_run, last_id = crashed.first_run, crashed.last_id
    try:
        after = EventsListener(crashed.events_url, crashed.token, last_id=last_id).start()

        def retried() -> bool:
            runs = longshore.json("runs", "list", "--job", job)["runs"]
            return any(run["status"] == "succeeded" for run in runs)

        wait_until(retried, "a retried run of the job succeeds", timeout=120)
        runs = {run["runId"]: run for run in longshore.json("runs", "list", "--job", job)["runs"]}
        (winner,) = [run for run in runs.values() if run["status"] == "succeeded"]
        assert winner["runId"] != first_run
        assert str(winner["taskId"]) == crashed.task_id
        assert winner["attempt"] >= 2
        assert_interrupted_and_removed(longshore, docker_api, first_run)
        runs = {run["runId"]: run for run in longshore.json("runs", "list", "--job", job)["runs"]}
        assert {run["status"] for run in runs.values()} <= {"failed", "succeeded"}, runs

        # No task lost: the task completed, nothing is left queued, running or dead.
        wait_until(lambda: longshore.stats()["completed"] == 1, "the task is recorded completed")
        stats = longshore.stats()
        left = (stats["ready"], stats["scheduled"], stats["running"], stats["dead"])
        assert left == (0, 0, 0, 0), stats
        assert longshore.json("tasks", "list")["total"] == 0
        assert longshore.json("dlq", "list")["total"] == 0

        wait_until(
            lambda: after.saw("RunSucceeded", winner["runId"]),
            "the resumed events stream delivers the retried run's success",
        )
        assert after.saw("RunFailed", first_run), "the interrupted run's end is streamed"
        stop(crashed.server)
        assert after.ended.wait(20), "the events stream outlived the stopped server"
        assert after.failure is None, after.failure
    finally:
        if crashed.server.popen.poll() is None:
            crashed.server.signal(signal.SIGKILL)
            crashed.server.wait()

    # The resumed stream: strictly increasing ids, none at or before the resume point, and
    # every durable event after it, up to the last one delivered, exactly once.
    resumed = after.ids()
    assert resumed, "nothing was delivered after the resume"
    assert resumed == sorted(set(resumed)), resumed
    assert resumed[0] > last_id
    stored = stored_ids_after(tmp_path / "data" / "events", last_id)
    assert stored[: len(resumed)] == resumed, (stored, resumed)


def test_a_killed_serve_ends_a_run_with_no_retry_left(
    longshore: Longshore, tmp_path: Path, docker_api: Any, job: str
):
    """No attempt left: the task is dead-lettered when its lease expires (no retry runs to
    end the killed attempt), and the restarted server's sweep still ends the run and removes
    its container."""
    crashed = kill_serve_mid_run(longshore, tmp_path, docker_api, job, retries=0)
    try:
        assert_interrupted_and_removed(longshore, docker_api, crashed.first_run)
        wait_until(lambda: longshore.stats()["dead"] == 1, "the task is dead-lettered")
        (entry,) = longshore.json("dlq", "list")["entries"]
        assert str(entry["id"]) == crashed.task_id
        assert longshore.stats()["running"] == 0
        assert [run["runId"] for run in longshore.json("runs", "list", "--job", job)["runs"]] == [
            crashed.first_run
        ]
        stop(crashed.server)
    finally:
        if crashed.server.popen.poll() is None:
            crashed.server.signal(signal.SIGKILL)
            crashed.server.wait()
