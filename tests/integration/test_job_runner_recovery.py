"""Crash recovery of the job runner against the real Docker engine and the SQLite store.

- ``JobRunner.cleanup_orphans`` (run when a worker starts) removes containers of runs no live
  worker owns and marks those runs failed, leaving queued runs, runs of live workers and
  containers of another runner scope (deployment) alone;
- a worker that starts while the Docker engine cannot be reached still runs built-in tasks,
  and a ``job.run`` task fails with ``EngineUnavailable`` and is retried, not dead-lettered.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrunner.docker_engine import DockerEngine
from jobrunner.engine import LABEL_JOB, LABEL_RUN, LABEL_SCOPE, ContainerEngine
from jobrunner.errors import EngineUnavailable
from jobrunner.recovery import INTERRUPTED
from jobrunner.runner import JobRunner
from store.events import EventType
from store.jobs.models import RunStatus, RunTrigger
from store.queue.models import NewTask, TaskState, WorkerInfo
from tests.integration.docker_images import BUSYBOX_IMAGE
from tests.integration.test_job_runs import (
    Env,
    docker_api,  # noqa: F401 (a fixture)
    job_files,
    make_env,
    tarball,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
async def env(tmp_path: Path, docker_api: Any) -> AsyncIterator[Env]:  # noqa: F811
    async for value in make_env(tmp_path, docker_api, "sqlite"):
        yield value


def runner_on(env: Env, engine: ContainerEngine | Any, **overrides: Any) -> JobRunner:
    values: dict[str, Any] = {
        "queue": env.queue,
        "jobs": env.jobs,
        "runs": env.runs,
        "engine": engine,
        "artifacts": env.artifacts,
        "config": env.config,
        "default_queue": f"jobs-{env.tag_prefix}",
        "retry_base_delay": 0.1,
        "events": env.events,
    }
    values.update(overrides)
    return JobRunner(**values)


def start_container(env: Env, job: str, run_id: str, scope: str) -> str:
    created = env.docker.create_container(
        BUSYBOX_IMAGE,
        command=["sleep", "60"],
        labels={LABEL_JOB: job, LABEL_RUN: run_id, LABEL_SCOPE: scope},
        host_config=env.docker.create_host_config(network_mode="none", init=True),
    )
    container_id = str(created["Id"])
    env.docker.start(container_id)
    return container_id


async def claimed_and_running(
    env: Env, job_queue: str, worker_id: str, run_id: str, lease: timedelta = timedelta(minutes=10)
) -> None:
    [task] = await env.queue.claim(worker_id, 1, lease=lease, queues=[job_queue])
    run = await env.runs.get(run_id)
    assert run.task_id == task.id
    for status in (RunStatus.FETCHING, RunStatus.BUILDING, RunStatus.RUNNING):
        await env.runs.transition(run_id, status)


async def test_cleanup_removes_orphaned_containers_and_fails_their_runs(env: Env) -> None:
    (env.tarball_dir / "s.tar.gz").write_bytes(tarball(job_files("sleep 60\n")))
    names = {}
    for role in ("dead", "live", "waiting", "swept"):
        job = await env.define(
            source="tarball_path",
            source_fields={"tarball_path": "s.tar.gz"},
            queue=f"{role}-{env.tag_prefix}",
        )
        names[role] = job.name
    runs = {}
    for role, name in names.items():
        _, runs[role] = await env.runner.submit(name, trigger=RunTrigger.API, actor="tester")

    # A worker that crashed mid-run: its task is leased by a worker no longer registered,
    # and the lease ran out.
    await claimed_and_running(
        env, f"dead-{env.tag_prefix}", "crashed-worker", runs["dead"], lease=timedelta(seconds=1)
    )
    # A live worker swept from the registry during a store outage: not listed, but its lease
    # is in force (it renews it), so its run goes on.
    await claimed_and_running(env, f"swept-{env.tag_prefix}", "swept-worker", runs["swept"])
    await asyncio.sleep(1.2)
    scope = env.runner.scope
    dead_container = start_container(env, names["dead"], runs["dead"], scope)
    # The same, but made by a runner of another deployment (another scope): not ours.
    foreign_container = start_container(env, names["dead"], runs["dead"], "another-scope")
    # A live worker's run, and a run whose task still waits to be claimed.
    live = WorkerInfo(
        worker_id=f"live-{env.tag_prefix}",
        hostname=socket.gethostname(),
        pid=os.getpid(),
        concurrency=1,
    )
    await env.queue.register_worker(live)
    await claimed_and_running(env, f"live-{env.tag_prefix}", live.worker_id, runs["live"])
    live_container = start_container(env, names["live"], runs["live"], scope)
    swept_container = start_container(env, names["swept"], runs["swept"], scope)
    try:
        runner = runner_on(env, env.engine)
        assert runner.scope == scope  # same work directory, same scope
        removed = await runner.cleanup_orphans()

        assert removed == [dead_container]
        assert env.docker.containers(all=True, filters={"id": dead_container}) == []
        dead = await env.runs.get(runs["dead"])
        assert dead.status is RunStatus.FAILED
        assert dead.error == INTERRUPTED
        assert dead.finished_at is not None
        [event] = [e for e in await env.events.by_run(runs["dead"]) if e.type == "RunFailed"]
        assert event.data["error"] == INTERRUPTED
        assert event.data["status"] == "failed"

        assert [c["Id"] for c in env.docker.containers(filters={"id": live_container})] == [
            live_container
        ]
        assert (await env.runs.get(runs["live"])).status is RunStatus.RUNNING
        assert env.docker.containers(filters={"id": swept_container}) != []
        assert (await env.runs.get(runs["swept"])).status is RunStatus.RUNNING
        assert env.docker.containers(filters={"id": foreign_container}) != []
        assert (await env.runs.get(runs["waiting"])).status is RunStatus.QUEUED

        # Idempotent: nothing more to do.
        assert await runner.cleanup_orphans() == []
    finally:
        for container in (live_container, swept_container, foreign_container):
            env.docker.remove_container(container, force=True, v=True)
        await env.queue.deregister_worker(live.worker_id)


async def test_a_worker_without_a_docker_engine_runs_builtins_and_retries_job_runs(
    env: Env,
) -> None:
    """The run waits for the engine (``RunWaiting``) on its own budget, here 2.5 s; past it,
    the fault fails the attempt and the task is retried with backoff (spending a retry)."""
    (env.tarball_dir / "hi.tar.gz").write_bytes(tarball(job_files("echo hi\n")))
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "hi.tar.gz"},
        queue=f"jobs-{env.tag_prefix}",
        retries=3,
    )
    engine = DockerEngine(env.artifacts, base_url="unix:///nonexistent.sock")
    # A long backoff, so the first retry is still waiting when we look.
    env.runner = runner_on(env, engine, retry_base_delay=60.0, infra_retry_seconds=2.5)
    try:
        # What the worker does when it starts: the sweep reports the engine missing (the
        # service logs it and goes on).
        with pytest.raises(EngineUnavailable):
            await env.runner.cleanup_orphans()

        noop = await env.queue.enqueue(
            NewTask(handler="builtin.noop", queue=f"jobs-{env.tag_prefix}")
        )
        task_id, run_id = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")

        async def done() -> bool:
            task = await env.queue.get_task(task_id)
            run = await env.runs.get(run_id)
            return (
                await env.task_settled(noop.task.id)
                and run.status.is_final
                and task is not None
                and task.state is not TaskState.RUNNING
            )

        await env.run_until(done)
        noop_task = await env.queue.get_task(noop.task.id)
        assert noop_task is None or noop_task.state is TaskState.DONE
        run = await env.runs.get(run_id)
        assert run.status is RunStatus.FAILED
        assert run.error is not None
        assert "EngineUnavailable" in run.error
        task = await env.queue.get_task(task_id)
        assert task.state is TaskState.SCHEDULED  # retried with backoff, not dead-lettered
        assert task.attempts == 1
        assert "EngineUnavailable" in task.last_error
        events = await env.events.by_run(run_id)
        types = [e.type for e in events]
        assert types[0] == EventType.RUN_QUEUED
        assert types[-1] == EventType.RUN_FAILED
        waits = [e for e in events if e.type == EventType.RUN_WAITING]
        assert len(waits) >= 2, types  # 1 s, then 1.5 s (what was left of the budget)
        assert {e.data["detail"] for e in waits} == {"waiting for the engine"}
        assert {e.data["reason"] for e in waits} == {"EngineUnavailable"}
        assert env.runner.infra_waits.exhausted == 1
        assert env.runner.infra_waits.waiting["engine"] == 0
    finally:
        engine.close()
        await asyncio.sleep(0)
