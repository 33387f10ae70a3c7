"""A ``job.run`` task retried after its worker died mid-run (its lease expired while the dead
worker was still registered, as when a killed ``serve`` is restarted at once): the new attempt
ends the earlier attempt's run (failed, interrupted) and removes its container before it runs,
so no run stays ``running`` forever and no container is left behind."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrunner.engine import LABEL_RUN
from jobrunner.recovery import INTERRUPTED
from store.events import EventType
from store.jobs.models import RunStatus, RunTrigger
from store.queue.models import TaskState, WorkerInfo
from tests.integration.test_job_runner_recovery import start_container
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


async def test_a_retry_ends_the_dead_attempts_run_and_removes_its_container(env: Env) -> None:
    (env.tarball_dir / "ok.tar.gz").write_bytes(tarball(job_files("echo retried\n")))
    job_queue = f"jobs-{env.tag_prefix}"
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "ok.tar.gz"},
        queue=job_queue,
        retries=2,
    )
    task_id, first_id = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")

    # A worker claims the task, gets its run to ``running`` with a container, and dies: it
    # stays registered (no one has swept it yet) while its short lease runs out.
    dead = WorkerInfo(
        worker_id=f"dead-{env.tag_prefix}",
        hostname=socket.gethostname(),
        pid=os.getpid(),
        concurrency=1,
    )
    await env.queue.register_worker(dead)
    [task] = await env.queue.claim(
        dead.worker_id, 1, lease=timedelta(seconds=0.5), queues=[job_queue]
    )
    assert task.id == task_id
    for status in (RunStatus.FETCHING, RunStatus.BUILDING, RunStatus.RUNNING):
        await env.runs.transition(first_id, status)
    container = start_container(env, job.name, first_id, env.runner.scope)
    try:
        await asyncio.sleep(0.6)
        # The startup sweep cannot tell: the task's owner is still registered.
        assert await env.runner.cleanup_orphans() == []
        assert (await env.runs.get(first_id)).status is RunStatus.RUNNING

        async def done() -> bool:
            return await env.task_settled(task_id)

        await env.run_until(done)

        first, second = await env.runs.find_by_task(task_id)
        assert first.run_id == first_id
        assert first.status is RunStatus.FAILED
        assert first.error == INTERRUPTED
        assert first.finished_at is not None
        assert second.attempt == 2
        assert second.status is RunStatus.SUCCEEDED, second.error
        assert env.output(second) == b"retried\n"
        assert env.docker.containers(all=True, filters={"label": f"{LABEL_RUN}={first_id}"}) == []
        types = [e.type for e in await env.events.by_run(first_id)]
        assert types[-1] == EventType.RUN_FAILED
        task_now = await env.queue.get_task(task_id)
        assert task_now is None or task_now.state is TaskState.DONE
    finally:
        if env.docker.containers(all=True, filters={"id": container}):
            env.docker.remove_container(container, force=True, v=True)
        await env.queue.deregister_worker(dead.worker_id)


async def test_the_sweep_ends_a_dead_workers_run_that_no_retry_will_end(env: Env) -> None:
    (env.tarball_dir / "s.tar.gz").write_bytes(tarball(job_files("sleep 60\n")))
    runs: dict[str, str] = {}
    for role in ("dead", "live"):
        job = await env.define(
            source="tarball_path",
            source_fields={"tarball_path": "s.tar.gz"},
            queue=f"{role}-{env.tag_prefix}",
            retries=0,
        )
        _, runs[role] = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")
    workers = {
        role: WorkerInfo(
            worker_id=f"{role}-{env.tag_prefix}",
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=1,
        )
        for role in ("dead", "live")
    }
    containers: dict[str, str] = {}
    for role, worker in workers.items():
        await env.queue.register_worker(worker)
        lease = timedelta(seconds=0.5) if role == "dead" else timedelta(minutes=10)
        await env.queue.claim(worker.worker_id, 1, lease=lease, queues=[f"{role}-{env.tag_prefix}"])
        for status in (RunStatus.FETCHING, RunStatus.BUILDING, RunStatus.RUNNING):
            await env.runs.transition(runs[role], status)
        run = await env.runs.get(runs[role])
        containers[role] = start_container(env, run.job, runs[role], env.runner.scope)
    try:
        # While the dead worker's lease holds, its run looks owned: nothing happens.
        assert await env.runner.sweep_interrupted() == []
        # The lease expires (the dead worker is still registered): its task had no attempt
        # left and is dead-lettered, so no retry will ever end its run; the sweep does.
        await asyncio.sleep(0.6)
        assert await env.queue.reclaim_expired() == 1
        dead_task = await env.queue.get_task((await env.runs.get(runs["dead"])).task_id)
        assert dead_task.state is TaskState.DEAD

        assert await env.runner.sweep_interrupted() == [containers["dead"]]
        dead = await env.runs.get(runs["dead"])
        assert dead.status is RunStatus.FAILED
        assert dead.error == INTERRUPTED
        assert env.docker.containers(all=True, filters={"id": containers["dead"]}) == []
        assert [e.type for e in await env.events.by_run(runs["dead"])][-1] == "RunFailed"
        # The live worker's run and container are untouched.
        assert (await env.runs.get(runs["live"])).status is RunStatus.RUNNING
        assert env.docker.containers(filters={"id": containers["live"]}) != []
        assert await env.runner.sweep_interrupted() == []
    finally:
        for container in containers.values():
            if env.docker.containers(all=True, filters={"id": container}):
                env.docker.remove_container(container, force=True, v=True)
        for worker in workers.values():
            await env.queue.deregister_worker(worker.worker_id)
