"""The world a seed 003 client looks at: ``longshore serve`` in this process, composed as
the command composes it (the admin listener prepared from its settings with mTLS, the
runtime with its scheduler leader and admin API server) on SQLite or PostgreSQL, and real
data behind every route, made through the API and run by a real worker on the real Docker
engine (the local busybox image):

- job ``hello`` (a seed form with ``timeoutSeconds: 0``) that ran and printed more than a
  result holds, run once through the API and once by its schedule;
- job ``sleepy`` that timed out and job ``refused`` whose tarball fails its SHA256 pin:
  both runs failed for good, so their tasks are in the dead-letter queue;
- schedule ``hello`` (the job's, fired by run-now), and ``ticker`` (``@every 1s``, overlap
  ``forbid``, ``builtin.noop``) that fired on its own, skipped the ticks that overlapped its
  waiting task, then was paused.

When :func:`seed_world` yields, nothing changes any more unless a test changes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import ssl
import tarfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from service.api_listener import prepare_admin_api
from service.lifecycle import Runtime, open_runtime
from service.runtime import build_registry
from service.settings import load_settings
from service.worker import Worker, WorkerOptions
from store.events import Stream
from store.queue.models import TaskState
from tests.contract.seed003.client import SeedClient
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

HELLO_LINES = [f"hello line {n:02d} of the seed 003 contract" for n in range(20)]
EMPTY_SEED_JOB: dict[str, Any] = {
    "name": "",
    "description": "",
    "source": "tarball_path",
    "repo": "",
    "tag": "",
    "tarballUrl": "",
    "tarballPath": "",
    "tarballSha256": "",
    "path": "",
    "dockerfile": "",
    "command": [],
    "env": [],
    "queue": "",
    "retries": 0,
    "timeoutSeconds": 0,
}
"""What seed 003's job form sends: always all 15 fields, ``""`` / ``0`` when left empty."""


def seed_job(name: str, **fields: Any) -> dict[str, Any]:
    return {**EMPTY_SEED_JOB, "name": name, **fields}


def job_tarball(script: str) -> bytes:
    files = {
        "Dockerfile": f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n',
        "job.sh": script,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"proj/{name}")
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class World:
    backend: str
    client: SeedClient
    runtime: Runtime
    hello_sha256: str
    started: dict[str, dict[str, str]] = field(default_factory=dict)
    """The ``{"taskId", "runId"}`` of each job's API run, by job."""
    scheduled_task: str = ""
    """The task of schedule ``hello``'s run-now."""

    async def settle(self, *task_ids: int, timeout: float = 90.0) -> None:
        """Run a real worker until every task is done or dead."""
        queue = self.runtime.stores.queue
        options = WorkerOptions(concurrency=2, poll_interval=0.1, heartbeat_interval=1.0)
        stop = asyncio.Event()
        worker = asyncio.create_task(
            Worker(queue, build_registry(self.runtime.job_runner), options).run(stop)
        )
        try:
            deadline = time.monotonic() + timeout
            for task_id in task_ids:
                while True:
                    task = await queue.get_task(task_id)
                    if task is None or task.state in (TaskState.DONE, TaskState.DEAD):
                        break
                    assert time.monotonic() < deadline, f"task {task_id} did not settle"
                    assert not worker.done(), "the worker stopped"
                    await asyncio.sleep(0.1)
        finally:
            stop.set()
            await worker


@asynccontextmanager
async def seed_world(backend: str, location: Any, directory: Path) -> AsyncIterator[World]:
    ensure_busybox_image(docker_client())
    tarballs = directory / "tarballs"
    tarballs.mkdir(parents=True)
    hello = job_tarball("".join(f"echo '{line}'\n" for line in HELLO_LINES))
    (tarballs / "hello.tar.gz").write_bytes(hello)
    (tarballs / "sleepy.tar.gz").write_bytes(job_tarball("sleep 30\n"))
    overrides: dict[str, Any] = {
        "data_dir": directory / "data",
        "job_tarball_dir": tarballs,
        "durable_cron_handlers": ("builtin.noop",),
    }
    if backend == "postgres":
        overrides["database_url"] = str(location)
    context = _certificates(directory, overrides)
    settings = load_settings({}, **overrides)
    plan = prepare_admin_api(settings)
    base_url = plan.url
    try:
        async with open_runtime(settings, role="serve", admin=plan) as runtime:
            client = SeedClient(base_url, context)
            world = World(
                backend=backend,
                client=client,
                runtime=runtime,
                hello_sha256=hashlib.sha256(hello).hexdigest(),
            )
            try:
                await _populate(world)
                yield world
            finally:
                await client.aclose()
    finally:
        plan.close()


async def _populate(world: World) -> None:
    client, sha = world.client, world.hello_sha256
    jobs = {
        "hello": seed_job(
            "hello", tarballPath="hello.tar.gz", tarballSha256=sha, command=["sh", "/job.sh"]
        ),
        "sleepy": seed_job("sleepy", tarballPath="sleepy.tar.gz", timeoutSeconds=1),
        "refused": seed_job("refused", tarballPath="hello.tar.gz", tarballSha256="0" * 64),
    }
    for body in jobs.values():
        await client.ok("POST", "/jobs", body)
    await client.ok("POST", "/schedules", {"name": "hello", "spec": "0 0 1 1 *", "durable": False})
    await client.ok(
        "POST",
        "/schedules",
        {
            "name": "ticker",
            "spec": "@every 1s",
            "factory": "builtin.noop",
            "overlapPolicy": "forbid",
        },
    )
    for name in jobs:
        world.started[name] = await client.ok("ACTION", f"/jobs/{name}/run")
    world.scheduled_task = (await client.ok("ACTION", "/schedules/hello/run"))["taskId"]
    ticker_task = await _ticks_fired_and_skipped(world)
    await client.ok("POST", "/schedules/ticker/pause", {"paused": True})
    tasks = [int(started["taskId"]) for started in world.started.values()]
    await world.settle(*tasks, int(world.scheduled_task), ticker_task)


async def _ticks_fired_and_skipped(world: World, timeout: float = 30.0) -> int:
    """Wait until ``ticker`` fired (by its clock) and skipped a tick; its fired task."""
    events = world.runtime.events
    deadline = time.monotonic() + timeout
    while True:
        found = await events.latest(Stream.SCHEDULES, "ticker", 100)
        fired = [e for e in found if e.type == "ScheduleFired"]
        if fired and any(e.type == "ScheduleSkipped" for e in found):
            return int(fired[-1].data["taskId"])
        assert time.monotonic() < deadline, "the scheduler did not fire and skip ticker"
        await asyncio.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _certificates(directory: Path, settings: dict[str, Any]) -> ssl.SSLContext:
    """A CA, the server's certificate for 127.0.0.1 in ``settings`` (as
    ``WORKER_ADMIN_TLS_CERT/KEY/CA`` would set them), and the client's TLS context: a
    certificate with CN ``seed-ui``, mapped to ``admin`` in ``WORKER_ADMIN_ROLES``."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = (
        directory / "server.pem",
        directory / "server.key",
        directory / "ca.pem",
    )
    server_cert.cert_chain_pems[0].write_to_path(cert_file)
    server_cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(ca_file)
    settings.update(
        admin_http_addr=f"127.0.0.1:{free_port()}",
        admin_tls_cert=cert_file,
        admin_tls_key=key_file,
        admin_tls_ca=ca_file,
        admin_roles={"seed-ui": "admin"},
    )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    ca.issue_cert("ui@example.org", common_name="seed-ui").configure_cert(context)
    return context
