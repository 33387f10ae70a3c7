"""Riding out store outages and paused workers, with real processes (``serve`` and
``longshore worker``), real Docker and a real PostgreSQL restarted in immediate mode.

Each test repeats its fault five times (what broke was a race). After every round: every
worker process is listed, no task ran twice (keyed tasks are kept as ``done`` with the number
of times they were claimed; each job task has one run), nothing that succeeded is in the
dead-letter queue, and a container run started afterwards is not killed.
"""

from __future__ import annotations

import asyncio
import io
import signal
import tarfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from jobrunner.engine import LABEL_JOB
from service.backends import Stores, open_store
from service.settings import load_settings
from store.jobs.models import RunStatus
from store.queue.models import DeadFilter, NewTask, TaskState
from store.queue.retry import RetryPolicy
from tests.acceptance.conftest import Longshore, Process, wait_until
from tests.acceptance.test_crash_recovery import (
    _pg_ctl,
    private_postgres,  # noqa: F401 (a fixture)
)
from tests.acceptance.test_serve_api import free_port, start_serve, wait_listening
from tests.conftest import only_postgres
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(300)]

T = TypeVar("T")

LEASE = 2.0
ROUNDS = 5
OUTAGE_ENV = {
    "WORKER_LEASE_SECONDS": str(int(LEASE)),
    "WORKER_STALE_WORKER_SECONDS": str(int(1.5 * LEASE)),
    "WORKER_POLL_INTERVAL_SECONDS": "0.2",
    "WORKER_CONCURRENCY": "4",
}
JOB_SCRIPT = "echo started\nsleep 2.5\necho finished\n"


@pytest.fixture(scope="module")
def docker_api() -> Any:
    api = docker_client()
    ensure_busybox_image(api)
    return api


@pytest.fixture
def job(docker_api: Any) -> Iterator[str]:
    """The job's name; its containers are removed at the end whatever happened."""
    name = f"outage-{uuid.uuid4().hex[:10]}"
    yield name
    for container in docker_api.containers(all=True, filters={"label": f"{LABEL_JOB}={name}"}):
        docker_api.remove_container(container["Id"], force=True, v=True)


def job_tarball(script: str) -> bytes:
    files = {
        "Dockerfile": f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n',
        "job.sh": script,
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


class Deployment:
    """``serve`` plus the given worker processes on one store, and ways to look at it."""

    def __init__(self, longshore: Longshore, tmp_path: Path, job: str) -> None:
        self.longshore = longshore
        self.job = job
        tarballs = tmp_path / "tarballs"
        tarballs.mkdir()
        (tarballs / "job.tar.gz").write_bytes(job_tarball(JOB_SCRIPT))
        self.port = free_port()
        longshore.env.update(OUTAGE_ENV)
        longshore.env.update(
            {
                "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{self.port}",
                "WORKER_JOB_TARBALL_DIR": str(tarballs),
            }
        )
        longshore.ok("migrate")
        self.serve = start_serve(longshore, "serve", {})
        wait_listening(self.serve, self.port)
        self.token = (tmp_path / "data" / "admin-token").read_text().strip()
        self.processes: list[Process] = [self.serve]
        definition = tmp_path / "job.yaml"
        definition.write_text(
            f"name: {job}\nsource: tarball_path\ntarballPath: job.tar.gz\n"
            "timeoutSeconds: 120\nretries: 2\n"
        )
        longshore.ok("jobs", "apply", "-f", str(definition))

    def start_worker(self, name: str) -> Process:
        worker = self.longshore.start("worker", name=name)
        self.processes.append(worker)
        return worker

    def store(self, action: Callable[[Stores], Awaitable[T]]) -> T:
        async def go() -> T:
            settings = load_settings(self.longshore.env)
            async with open_store(settings, migrate=False) as stores:
                return await action(stores)

        return asyncio.run(go())

    def listed_pids(self) -> set[int]:
        return {int(worker["pid"]) for worker in self.api("GET", "/workers")["workers"]}

    def assert_all_listed(self) -> None:
        for process in self.processes:
            process.assert_running()
        pids = {process.popen.pid for process in self.processes}
        wait_until(lambda: self.listed_pids() >= pids, "every worker process is listed", timeout=15)

    def enqueue_sleeps(self, prefix: str, count: int, seconds: float, attempts: int) -> list[int]:
        async def go(stores: Stores) -> list[int]:
            return [
                (
                    await stores.queue.enqueue(
                        NewTask(
                            handler="builtin.sleep",
                            payload={"seconds": seconds},
                            key=f"{prefix}-{i}",
                            retry=RetryPolicy(max_attempts=attempts),
                        )
                    )
                ).task.id
                for i in range(count)
            ]

        return self.store(go)

    def api(self, method: str, path: str) -> Any:
        response = httpx.request(
            method,
            f"http://127.0.0.1:{self.port}/admin/v1{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def run_job(self) -> tuple[int, str]:
        started = self.api("POST", f"/jobs/{self.job}/run")
        return int(started["taskId"]), str(started["runId"])

    def run_statuses(self, run_ids: list[str]) -> list[RunStatus]:
        async def go(stores: Stores) -> list[RunStatus]:
            runs = [await stores.runs.get(run_id) for run_id in run_ids]
            return [run.status for run in runs if run is not None]

        return self.store(go)

    def run_status(self, run_id: str) -> RunStatus:
        [status] = self.run_statuses([run_id])
        return status

    def task_states(self, task_ids: list[int]) -> dict[int, tuple[TaskState | None, int, str]]:
        """Each task's state (``None``: deleted), attempts and lease owner."""

        async def go(stores: Stores) -> dict[int, tuple[TaskState | None, int, str]]:
            found = {}
            for task_id in task_ids:
                task = await stores.queue.get_task(task_id)
                found[task_id] = (
                    (None, 0, "")
                    if task is None
                    else (task.state, task.attempts, task.lease_owner or "")
                )
            return found

        return self.store(go)

    def settled(self, task_ids: list[int]) -> bool:
        states = self.task_states(task_ids).values()
        return all(state in (None, TaskState.DONE, TaskState.DEAD) for state, _, _ in states)

    def assert_ran_once(self, task_ids: list[int], job_tasks: list[int]) -> None:
        """Every keyed task was claimed once and completed; every job task has exactly one
        run, which succeeded; the dead-letter queue is empty."""
        states = self.task_states(task_ids)
        assert all(state is TaskState.DONE for state, _, _ in states.values()), states
        assert all(attempts == 1 for _, attempts, _ in states.values()), states

        async def go(stores: Stores) -> tuple[list[list[tuple[int, str]]], int]:
            runs = [await stores.runs.find_by_task(task_id) for task_id in job_tasks]
            dead = await stores.queue.list_dead(DeadFilter(), limit=10, offset=0)
            return [[(r.attempt, r.status.value) for r in rs] for rs in runs], dead.total

        runs, dead = self.store(go)
        assert runs == [[(1, "succeeded")]] * len(job_tasks), runs
        assert dead == 0

    def assert_new_run_succeeds(self) -> None:
        """A container run started now is not killed (the sweep ends only dead owners' runs)."""
        task_id, run_id = self.run_job()
        wait_until(
            lambda: self.run_status(run_id).is_final, "the new run ends", timeout=60, interval=0.5
        )
        assert self.run_status(run_id) is RunStatus.SUCCEEDED
        self.assert_ran_once([], [task_id])


@only_postgres
def test_postgres_outages_longer_than_the_lease_write_nothing_off(
    longshore: Longshore,
    private_postgres: tuple[str, Path],  # noqa: F811
    tmp_path: Path,
    job: str,
):
    url, data_dir = private_postgres
    longshore.env["WORKER_DATABASE_URL"] = url
    port = urlsplit(url).port
    # As scripts/postgres-up started it: its private port, loopback only.
    server_options = f"-p {port} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200"
    deployment = Deployment(longshore, tmp_path, job)
    deployment.start_worker("worker-1")
    deployment.start_worker("worker-2")
    deployment.assert_all_listed()
    deployment.assert_new_run_succeeds()  # the image is built once, before the rounds

    for round_ in range(ROUNDS):
        sleeps = deployment.enqueue_sleeps(f"pg-{round_}", 4, seconds=2 * LEASE, attempts=3)
        wait_until(
            lambda s=sleeps: all(
                state is TaskState.RUNNING for state, _, _ in deployment.task_states(s).values()
            ),
            f"round {round_}: the sleeps run",
            timeout=30,
            interval=0.1,
        )
        jobs = [deployment.run_job() for _ in range(2)]
        run_ids = [run_id for _, run_id in jobs]
        wait_until(
            lambda r=run_ids: deployment.run_statuses(r) == [RunStatus.RUNNING] * len(r),
            f"round {round_}: the containers run",
            timeout=60,
            interval=0.1,
        )
        # The outage: 1.5 leases, every connection cut without a goodbye. The sleeps and
        # the containers end during it: their results wait for the store.
        assert _pg_ctl(data_dir, "stop", "-m", "immediate", "-w") == 0
        time.sleep(1.5 * LEASE)
        assert _pg_ctl(data_dir, "start", "-w", "-t", "60", "-o", server_options) == 0

        job_tasks = [task_id for task_id, _ in jobs]
        wait_until(
            lambda s=sleeps, j=job_tasks: deployment.settled(s + j),
            f"round {round_}: every task ends",
            timeout=90,
            interval=0.5,
        )
        deployment.assert_all_listed()
        deployment.assert_ran_once(sleeps, job_tasks)
        deployment.assert_new_run_succeeds()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_worker_paused_past_its_lease_on_the_embedded_store_loses_nothing(
    longshore: Longshore, tmp_path: Path, job: str
):
    deployment = Deployment(longshore, tmp_path, job)
    victim = deployment.start_worker("victim")
    deployment.assert_all_listed()
    deployment.assert_new_run_succeeds()
    rescued = 0

    for round_ in range(ROUNDS):
        # One attempt each: a task whose lease lapses is dead-lettered, not run again.
        sleeps = deployment.enqueue_sleeps(f"stop-{round_}", 8, seconds=1.0, attempts=1)

        def victim_busy(sleeps: list[int] = sleeps) -> list[int]:
            states = deployment.task_states(sleeps)
            mark = f":{victim.popen.pid}:"
            return [
                task_id
                for task_id, (state, _, owner) in states.items()
                if state is TaskState.RUNNING and mark in owner
            ]

        wait_until(lambda: bool(victim_busy()), "the victim runs some of the tasks", timeout=30)
        held = victim_busy()
        victim.signal(signal.SIGSTOP)
        try:
            time.sleep(3 * LEASE)
            # Its leases lapsed and nothing is left to retry them: in the DLQ for now.
            states = deployment.task_states(held)
            dead = [task_id for task_id, (state, _, _) in states.items() if state is TaskState.DEAD]
        finally:
            victim.signal(signal.SIGCONT)
        assert dead, f"round {round_}: no lease lapsed ({states}); the round proves nothing"
        rescued += len(dead)

        wait_until(
            lambda s=sleeps: (
                deployment.settled(s)
                and all(
                    state is TaskState.DONE for state, _, _ in deployment.task_states(s).values()
                )
            ),
            f"round {round_}: every task is done, the late ones taken out of the DLQ",
            timeout=60,
            interval=0.5,
        )
        deployment.assert_all_listed()
        deployment.assert_ran_once(sleeps, [])
        deployment.assert_new_run_succeeds()

    assert rescued >= ROUNDS
    log = (victim.logs / f"{victim.name}.err").read_text(errors="replace")
    assert log.count("a success arrived after its lease lapsed") >= rescued
