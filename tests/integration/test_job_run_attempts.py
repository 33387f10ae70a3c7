"""Runs tell the truth about how they came to be: a task handed back at shutdown is re-run
as the next attempt, and a replayed dead task's run is ``trigger: replay`` by the operator
who replayed it (SQLite and PostgreSQL: the queue's hand-back and replay differ by
backend)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from service.runtime import build_registry
from service.worker import Worker, WorkerOptions
from store.jobs.models import RunStatus, RunTrigger
from store.queue.models import TaskState
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


def worker(env: Env, *, grace: float = 5.0) -> Worker:
    registry = build_registry(env.runner)
    options = WorkerOptions(
        concurrency=2, poll_interval=0.1, heartbeat_interval=1.0, shutdown_grace=grace
    )
    return Worker(env.queue, registry, options)


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)


async def test_a_task_handed_back_at_shutdown_is_rerun_as_attempt_2(env: Env) -> None:
    (env.tarball_dir / "slow.tar.gz").write_bytes(tarball(job_files("sleep 60\n")))
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "slow.tar.gz"},
        queue=f"jobs-{env.tag_prefix}",
    )
    task_id, first_id = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")

    async def attempt_running(number: int) -> bool:
        runs = await env.runs.find_by_task(task_id)
        return any(r.attempt == number and r.status is RunStatus.RUNNING for r in runs)

    for number in (1, 2):
        stop = asyncio.Event()
        running = asyncio.create_task(worker(env, grace=0.2).run(stop))
        try:
            await wait_for(lambda n=number: attempt_running(n), f"attempt {number} runs")
        finally:
            stop.set()  # SIGTERM: the running attempt is handed back after the grace
            await running
        task = await env.queue.get_task(task_id)
        assert task is not None
        assert task.state is TaskState.READY

    first, second = await env.runs.find_by_task(task_id)
    assert first.run_id == first_id
    assert (first.attempt, first.status) == (1, RunStatus.FAILED)
    assert first.error == "interrupted: the worker stopped"
    assert (second.attempt, second.status) == (2, RunStatus.FAILED)
    assert (second.trigger, second.actor) == (RunTrigger.API, "t")


async def test_a_replayed_task_runs_as_a_replay_by_the_replaying_actor(env: Env) -> None:
    (env.tarball_dir / "job.tar.gz").write_bytes(tarball(job_files("exit 3\n")))
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "job.tar.gz"},
        queue=f"jobs-{env.tag_prefix}",
        retries=1,
    )
    task_id, runs = await env.run_job(job.name)
    assert [(r.attempt, r.trigger, r.actor, r.status) for r in runs] == [
        (1, RunTrigger.API, "tester", RunStatus.FAILED),
        (2, RunTrigger.API, "tester", RunStatus.FAILED),
    ]
    assert (await env.queue.get_task(task_id)).state is TaskState.DEAD

    # Fixed; an operator replays it. The replay resets the attempts: its runs count afresh.
    (env.tarball_dir / "job.tar.gz").write_bytes(tarball(job_files("echo fixed\n")))
    assert await env.queue.replay_dead([task_id], actor="operator-olga") == [task_id]
    await env.run_until(lambda: env.task_settled(task_id))

    *_, replayed = await env.runs.find_by_task(task_id)
    assert replayed.status is RunStatus.SUCCEEDED, replayed.error
    assert (replayed.attempt, replayed.trigger, replayed.actor) == (
        1,
        RunTrigger.REPLAY,
        "operator-olga",
    )
    assert len(await env.runs.find_by_task(task_id)) == 3
    assert env.output(replayed) == b"fixed\n"
