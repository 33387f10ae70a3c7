"""Late results: a success written after its attempt's lease lapsed (a worker paused past its
lease, an outage longer than it) settles the task instead of being lost, is recorded on the
attempt's run, and a re-run that has not started its container yet is stopped (SQLite and
PostgreSQL, real Docker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrunner.attempt import LEASE_LOST
from jobrunner.engine import LABEL_RUN
from service.runtime import build_registry
from service.worker import Worker, WorkerOptions
from store.events import EventType
from store.jobs.models import RunStatus, RunTrigger
from store.queue.models import LateOutcome, Lease, NewTask, TaskState
from store.queue.retry import RetryPolicy
from tests.integration.test_job_runs import (
    Env,
    docker_api,  # noqa: F401 (a fixture)
    job_files,
    make_env,
    tarball,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
async def env(
    backend: str,
    queue_location: Any,
    tmp_path: Path,
    docker_api: Any,  # noqa: F811
) -> AsyncIterator[Env]:
    url = None if backend == "sqlite" else str(queue_location)
    async for value in make_env(tmp_path, docker_api, backend, url):
        yield value


def lapsing_worker(env: Env) -> Worker:
    """A worker whose leases lapse while its handlers run: it renews them far too rarely,
    as one paused (``kill -STOP``) or cut off from its store would."""
    options = WorkerOptions(
        concurrency=2,
        lease=timedelta(seconds=0.5),
        heartbeat_interval=60.0,
        poll_interval=0.1,
        shutdown_grace=5.0,
        stale_after=timedelta(hours=1),
    )
    return Worker(env.queue, build_registry(env.runner), options)


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


async def completed(env: Env) -> int:
    return sum(info.completed for info in await env.queue.list_queues())


async def test_a_late_success_takes_its_task_out_of_the_dlq(env: Env) -> None:
    task = (
        await env.queue.enqueue(
            NewTask(
                handler="builtin.sleep",
                payload={"seconds": 1.5},
                queue=f"q-{env.tag_prefix}",
                retry=RetryPolicy(max_attempts=1),
            )
        )
    ).task
    stop = asyncio.Event()
    worker = asyncio.create_task(lapsing_worker(env).run(stop))
    try:

        async def lapsed() -> bool:
            found = await env.queue.get_task(task.id)
            return (
                found is not None
                and found.state is TaskState.RUNNING
                and (
                    found.lease_expires_at is not None
                    and found.lease_expires_at.timestamp() < time.time() - 0.05
                )
            )

        await wait_for(lapsed, "the running task's lease lapses")
        # Another worker's maintenance: the lease lapsed and no attempt is left.
        assert await env.queue.reclaim_expired() == 1
        assert (await env.queue.get_task(task.id)).state is TaskState.DEAD

        async def settled() -> bool:
            return await env.queue.get_task(task.id) is None

        await wait_for(settled, "the late success settles the task")
    finally:
        stop.set()
        await worker
    page = await env.queue.list_dead(_all(), limit=10, offset=0)
    assert page.total == 0
    assert await completed(env) == 1


async def test_a_late_job_success_is_recorded_on_its_run_and_leaves_the_dlq(env: Env) -> None:
    (env.tarball_dir / "slow.tar.gz").write_bytes(
        tarball(job_files(f"sleep 2\necho done {env.tag_prefix}\n"))
    )
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "slow.tar.gz"},
        queue=f"jobs-{env.tag_prefix}",
        retries=0,
    )
    task_id, run_id = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")
    stop = asyncio.Event()
    worker = asyncio.create_task(lapsing_worker(env).run(stop))
    try:

        async def running() -> bool:
            run = await env.runs.get(run_id)
            return run is not None and run.status is RunStatus.RUNNING

        await wait_for(running, "the container runs")
        await asyncio.sleep(0.6)  # past the lease
        assert await env.queue.reclaim_expired() == 1
        assert (await env.queue.get_task(task_id)).state is TaskState.DEAD

        async def settled() -> bool:
            return await env.queue.get_task(task_id) is None

        await wait_for(settled, "the late success settles the task")
    finally:
        stop.set()
        await worker
    [run] = await env.runs.find_by_task(task_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (await env.queue.list_dead(_all(), limit=10, offset=0)).total == 0
    late = [e for e in await env.events.by_run(run_id) if e.type == EventType.RUN_LATE_RESULT]
    assert [e.data["lateResult"] for e in late] == [LateOutcome.TAKEN_FROM_DLQ.value]
    assert late[0].data["attempt"] == 1


async def test_a_rerun_not_yet_in_its_container_stops_when_a_late_success_settles_it(
    env: Env,
) -> None:
    # The build takes a while, so the re-run is still building when the late result lands.
    files = job_files(f"echo rerun {env.tag_prefix}\n")
    files["Dockerfile"] = files["Dockerfile"].replace(b"\nCOPY", b"\nRUN sleep 3\nCOPY", 1)
    (env.tarball_dir / "build.tar.gz").write_bytes(tarball(files))
    queue_name = f"jobs-{env.tag_prefix}"
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "build.tar.gz"},
        queue=queue_name,
        retries=2,
    )
    task_id, _ = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")
    # Attempt 1's worker claims the task and goes quiet past its lease.
    [first] = await env.queue.claim(
        "paused-worker", 1, lease=timedelta(seconds=0.2), queues=[queue_name]
    )
    await asyncio.sleep(0.3)
    assert await env.queue.reclaim_expired() == 1

    async def rerun_building() -> bool:
        runs = await env.runs.find_by_task(task_id)
        return any(r.attempt == 2 and r.status is RunStatus.BUILDING for r in runs)

    async def settled() -> bool:
        return await env.task_settled(task_id)

    stop = asyncio.Event()
    options = WorkerOptions(concurrency=1, poll_interval=0.1, heartbeat_interval=1.0)
    worker = asyncio.create_task(Worker(env.queue, build_registry(env.runner), options).run(stop))
    try:
        await wait_for(rerun_building, "the re-run builds")
        # Attempt 1's success arrives now.
        outcome = await env.queue.complete_fenced(
            "paused-worker", [Lease(task_id=task_id, attempt=first.attempts)]
        )
        assert outcome == {task_id: LateOutcome.SUPERSEDED}

        async def rerun_ended() -> bool:
            runs = await env.runs.find_by_task(task_id)
            return any(r.attempt == 2 and r.status.is_final for r in runs)

        await wait_for(rerun_ended, "the re-run ends")
        assert await settled()
    finally:
        stop.set()
        await worker
    rerun = next(r for r in await env.runs.find_by_task(task_id) if r.attempt == 2)
    assert (rerun.status, rerun.error) == (RunStatus.CANCELLED, LEASE_LOST)
    assert rerun.running_at is None
    containers = env.docker.containers(all=True, filters={"label": f"{LABEL_RUN}={rerun.run_id}"})
    assert containers == []
    assert await completed(env) == 1


def _all() -> Any:
    from store.queue.models import DeadFilter

    return DeadFilter()
