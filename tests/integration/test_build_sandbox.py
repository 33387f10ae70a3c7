"""The build stage is execution, so it runs inside the sandbox: each attack a source's
Dockerfile could make on the build is refused or bounded (docs/security.md).

Real Docker engine, jobs from tarball paths run by a real worker on the SQLite store; the
only servers are on loopback. No registry can be reached, so pulls can only be shown to be
refused (``never``) or to fail within their deadline (``missing``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from jobrunner.config import BuildPolicy
from jobrunner.engine import LABEL_JOB, LABEL_SCOPE
from jobrunner.runner import JobRunner
from store.jobs.models import Resources, Run, RunStatus, RunTrigger
from store.queue.models import TaskState
from tests.integration.docker_images import BUSYBOX_IMAGE, build_context_tar
from tests.integration.test_job_runs import Env, docker_api, make_env, tarball

pytestmark = [pytest.mark.docker, pytest.mark.slow]

__all__ = ["docker_api"]  # the module fixture, shared with test_job_runs


@pytest.fixture
async def env(tmp_path: Path, docker_api: Any) -> AsyncIterator[Env]:
    async for value in make_env(tmp_path, docker_api, "sqlite"):
        yield value


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = b"a secret only loopback may read\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_http() -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP server on loopback: its base URL and the paths it was asked for."""
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"requests": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


async def define(env: Env, dockerfile: str, **fields: Any) -> str:
    """A job whose source is a tarball holding ``dockerfile``; its name."""
    name = f"sbx-{uuid.uuid4().hex[:10]}"
    files = {"Dockerfile": dockerfile.encode(), "job.sh": b"echo built\n"}
    (env.tarball_dir / f"{name}.tar.gz").write_bytes(tarball(files))
    await env.define(
        name=name,
        source="tarball_path",
        source_fields={"tarball_path": f"{name}.tar.gz"},
        **fields,
    )
    return name


def with_policy(env: Env, infra_retry_seconds: float = 600.0, **policy: Any) -> Env:
    """The same stores and engine, run by a runner with another build policy (and wait
    budget for infrastructure faults)."""
    config = dataclasses.replace(env.config, build=BuildPolicy(**policy))
    runner = JobRunner(
        queue=env.queue,
        jobs=env.jobs,
        runs=env.runs,
        engine=env.engine,
        artifacts=env.artifacts,
        config=config,
        default_queue=f"jobs-{env.tag_prefix}",
        retry_base_delay=0.1,
        events=env.events,
        infra_retry_seconds=infra_retry_seconds,
    )
    return dataclasses.replace(env, runner=runner, config=config)


def images_of_job(env: Env, name: str) -> list[Any]:
    found: list[Any] = env.docker.images(filters={"label": f"{LABEL_JOB}={name}"})
    return found


def build_leftovers(env: Env, run: Run) -> list[str]:
    """The build containers and images named in the run's build log that still exist."""
    base = env.docker.inspect_image(BUSYBOX_IMAGE)["Id"]
    left = []
    for container in re.findall(r"Running in ([0-9a-f]{12})", run.build_log):
        if env.docker.containers(all=True, filters={"id": container}):
            left.append(f"container {container}")
    for image in re.findall(r"^ ---> ([0-9a-f]{12})$", run.build_log, re.MULTILINE):
        if not base.startswith(f"sha256:{image}") and _image_exists(env, image):
            left.append(f"image {image}")
    return left


def _image_exists(env: Env, image: str) -> bool:
    try:
        env.docker.inspect_image(image)
    except docker.errors.NotFound:
        return False
    return True


# --- the Dockerfile policy ------------------------------------------------------------------


async def test_add_of_a_loopback_url_is_refused_before_any_request_reaches_it(
    env: Env, loopback_http: tuple[str, list[str]]
) -> None:
    base, seen = loopback_http
    name = await define(
        env, f"FROM {BUSYBOX_IMAGE}\nADD {base}/secret.txt /leak.txt\nCMD cat /leak.txt\n"
    )
    task_id, [run] = await env.run_job(name)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "SourceRejected" in run.error
    assert "Dockerfile line 2: ADD of" in run.error
    assert seen == [], "the daemon fetched the URL"
    assert images_of_job(env, name) == []
    assert (await env.queue.get_task(task_id)).state is TaskState.DEAD  # not retried


@pytest.fixture
def other_scope_image(env: Env, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An image as another Longshore deployment on this engine would have built it (its
    scope label), holding a secret, tagged by name; (short id, name)."""
    name = f"longshore-test/other-scope-{uuid.uuid4().hex[:8]}:1"
    context = build_context_tar(
        {"Dockerfile": f"FROM {BUSYBOX_IMAGE}\nRUN echo other-deployment-secret > /secret\n"},
        tmp_path / "other.tar",
    )
    with context.open("rb") as data:
        for _ in env.docker.build(
            fileobj=data,
            custom_context=True,
            tag=name,
            labels={LABEL_SCOPE: "0123456789abcdef", LABEL_JOB: "theirs"},
            network_mode="none",
            rm=True,
            decode=True,
        ):
            pass
    image_id = env.docker.inspect_image(name)["Id"]
    try:
        yield image_id[7:19], name
    finally:
        env.docker.remove_image(image_id, force=True)


@pytest.mark.parametrize("by", ["short id", "name"])
async def test_copy_from_an_image_of_another_scope_is_refused(
    env: Env, other_scope_image: tuple[str, str], by: str
) -> None:
    short_id, name = other_scope_image
    reference = short_id if by == "short id" else name
    job = await define(
        env, f"FROM {BUSYBOX_IMAGE}\nCOPY --from={reference} /secret /stolen\nCMD cat /stolen\n"
    )
    _, [run] = await env.run_job(job)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "SourceRejected" in run.error
    if by == "short id":
        assert "not allowed by WORKER_JOB_BASE_IMAGES" in run.error
    else:
        assert "built by Longshore for another deployment" in run.error
    assert images_of_job(env, job) == []


async def test_a_stricter_policy_rebuilds_and_checks_again_but_a_rerun_does_not(
    env: Env,
) -> None:
    name = await define(env, f"FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD sh /job.sh\n")
    _, [first] = await env.run_job(name)
    _, [second] = await env.run_job(name)
    assert first.status is second.status is RunStatus.SUCCEEDED
    assert second.image_id == first.image_id
    assert "Step 1/" in first.build_log
    assert second.build_log == ""  # cached: nothing parsed, checked or built
    strict = with_policy(env, base_images=("registry.example/base/*",))
    _, [third] = await strict.run_job(name)
    assert third.status is RunStatus.FAILED
    assert third.error is not None
    assert "not allowed by WORKER_JOB_BASE_IMAGES" in third.error


# --- base images: never pulled by the engine ----------------------------------------------


def pull_events(env: Env, since: float) -> list[dict[str, Any]]:
    events = env.docker.events(
        since=int(since), until=int(time.time()) + 1, filters={"type": "image"}, decode=True
    )
    return [event for event in events if event.get("Action") == "pull"]


async def test_a_missing_base_is_refused_with_no_pull_attempt(env: Env) -> None:
    missing = f"longshore-test/missing-{uuid.uuid4().hex[:8]}:1"
    name = await define(env, f"FROM {missing}\nCMD true\n")
    since = time.time()
    _, [run] = await env.run_job(name)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert f"base image '{missing}' is not on the Docker engine" in run.error
    assert "WORKER_JOB_PULL=never" in run.error
    assert run.build_log == ""  # nothing reached the builder
    assert pull_events(env, since) == []


async def test_with_pull_missing_a_present_base_is_used_and_a_missing_one_fails_in_time(
    env: Env,
) -> None:
    # A failed pull is a network fault: waited out on its own budget (here 1.5 s), then the
    # run fails with it.
    pulling = with_policy(env, pull="missing", pull_timeout=20.0, infra_retry_seconds=1.5)
    present = await define(pulling, f"FROM {BUSYBOX_IMAGE}\nCMD true\n")
    since = time.time()
    _, [run] = await pulling.run_job(present)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert pull_events(env, since) == []
    # No registry answers here: the pull Longshore makes fails, within its deadline.
    missing = f"longshore-test/missing-{uuid.uuid4().hex[:8]}:1"
    absent = await define(pulling, f"FROM {missing}\nCMD true\n")
    started = time.monotonic()
    _, [run] = await pulling.run_job(absent)
    assert time.monotonic() - started < 30
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "FetchFailed" in run.error
    assert missing in run.error
    waits = [e for e in await env.events.by_run(run.run_id) if e.type == "RunWaiting"]
    assert waits, "the failed pull was not waited on"
    assert {e.data["detail"] for e in waits} == {"waiting for the network"}


class _EmptyRegistry(BaseHTTPRequestHandler):
    """A registry (API v2) that has no image at all."""

    def do_GET(self) -> None:
        found = self.path == "/v2/"
        body = (
            b"{}"
            if found
            else b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
        )
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        pass


async def test_a_base_image_the_registry_does_not_have_fails_at_once_without_waiting(
    env: Env,
) -> None:
    """Unlike a registry out of reach (a network fault, waited out), a registry that answers
    that it has no such image makes the run fail permanently, without waiting."""
    registry = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyRegistry)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    try:
        pulling = with_policy(env, pull="missing", pull_timeout=20.0)
        missing = f"127.0.0.1:{registry.server_address[1]}/longshore-test/none:1"
        name = await define(pulling, f"FROM {missing}\nCMD true\n")
        started = time.monotonic()
        task_id, [run] = await pulling.run_job(name)
        assert time.monotonic() - started < 30
        assert run.status is RunStatus.FAILED
        assert run.error is not None
        assert "SourceRejected" in run.error
        assert "manifest unknown" in run.error
        assert [e for e in await env.events.by_run(run.run_id) if e.type == "RunWaiting"] == []
        task = await env.queue.get_task(task_id)
        assert task is not None
        assert task.state is TaskState.DEAD
    finally:
        registry.shutdown()
        registry.server_close()


# --- RUN steps: limits, network, deadline, cancel -----------------------------------------


async def test_a_memory_bomb_in_a_run_step_is_bounded_by_the_jobs_memory(env: Env) -> None:
    bomb = "RUN head -c 400m /dev/zero | tail -c 400m > /dev/null && echo survived"
    name = await define(
        env, f"FROM {BUSYBOX_IMAGE}\n{bomb}\n", resources=Resources(memory_mb=64, pids_limit=64)
    )
    _, [run] = await env.run_job(name)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "BuildFailed" in run.error
    assert "returned a non-zero code: 137" in run.error  # killed by the OOM killer
    assert "\nsurvived\n" not in run.error


async def test_a_fork_bomb_in_a_run_step_is_bounded_by_the_jobs_pids_limit(env: Env) -> None:
    bomb = "RUN i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done; echo forked $i"
    name = await define(
        env, f"FROM {BUSYBOX_IMAGE}\n{bomb}\n", resources=Resources(memory_mb=128, pids_limit=32)
    )
    _, [run] = await env.run_job(name)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "can't fork" in run.error
    assert "forked 200" not in run.error


async def test_run_steps_have_no_network_and_the_jobs_cpu_quota(env: Env) -> None:
    probe = (
        f"RUN echo {uuid.uuid4().hex} && cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
        " /sys/fs/cgroup/memory/memory.limit_in_bytes && ls /sys/class/net"
    )
    name = await define(
        env,
        f"FROM {BUSYBOX_IMAGE}\n{probe}\nCMD true\n",
        resources=Resources(memory_mb=96, cpus=0.5, pids_limit=64),
    )
    _, [run] = await env.run_job(name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert "\n50000\n" in run.build_log
    assert f"\n{96 * 1024 * 1024}\n" in run.build_log
    assert "\nlo\n" in run.build_log
    assert "eth0" not in run.build_log


async def test_a_build_past_the_jobs_deadline_ends_timed_out_and_leaves_nothing(
    env: Env,
) -> None:
    step = f"RUN echo {uuid.uuid4().hex} > /one"  # a step of its own: not from the cache
    name = await define(env, f"FROM {BUSYBOX_IMAGE}\n{step}\nRUN sleep 60\n", timeout_seconds=5)
    started = time.monotonic()
    task_id, [run] = await env.run_job(name)
    assert time.monotonic() - started < 10
    assert run.status is RunStatus.TIMED_OUT
    assert run.error == "timed out after 5 s while building"
    assert "Running in" in run.build_log
    assert build_leftovers(env, run) == []
    assert images_of_job(env, name) == []
    assert (await env.queue.get_task(task_id)).state is TaskState.DEAD  # retries: 0


async def test_a_cancel_stops_a_build_within_two_seconds_and_leaves_nothing(env: Env) -> None:
    step = f"RUN echo {uuid.uuid4().hex} > /one"  # a step of its own: not from the cache
    name = await define(env, f"FROM {BUSYBOX_IMAGE}\n{step}\nRUN sleep 60\n")
    task_id, run_id = await env.runner.submit(name, trigger=RunTrigger.API, actor="tester")
    asked: list[float] = []
    ended: list[float] = []

    async def done() -> bool:
        run = await env.runs.get(run_id)
        if run.status is RunStatus.BUILDING and not asked:
            await asyncio.sleep(1.5)  # the sleep step is running by now
            await env.runs.request_cancel(run_id)
            asked.append(time.monotonic())
        if run.status.is_final and not ended:
            ended.append(time.monotonic())
        return run.status.is_final and await env.task_settled(task_id)

    await env.run_until(done)
    run = await env.runs.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.error == "cancelled while building"
    assert ended[0] - asked[0] < 2.0
    assert "Running in" in run.build_log
    assert build_leftovers(env, run) == []
    assert images_of_job(env, name) == []
    assert await env.queue.get_task(task_id) is None  # completed: no retry
