"""What an engine restart leaves, with the real engine: containers of runs that ended are
removed by the periodic sweep (not only at start), and a retry stops and removes the
earlier attempt's container (found by its labels) before it starts its own, even when that
attempt's run was ended already, so the two never run side by side."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrunner.engine import LABEL_RUN, LABEL_SCOPE, OutputCallback, RunResult, RunSpec
from jobrunner.recovery import INTERRUPTED
from jobrunner.runner import JobRunner
from store.jobs.models import RunStatus, RunTrigger
from store.queue.handlers import TaskContext
from store.queue.models import Failure, WorkerInfo
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


def exists(env: Env, container_id: str) -> bool:
    return bool(env.docker.containers(all=True, filters={"id": container_id}))


def remove(env: Env, *containers: str) -> None:
    for container in containers:
        if exists(env, container):
            env.docker.remove_container(container, force=True, v=True)


def worker_info(env: Env, role: str) -> WorkerInfo:
    return WorkerInfo(
        worker_id=f"{role}-{env.tag_prefix}",
        hostname=socket.gethostname(),
        pid=os.getpid(),
        concurrency=1,
    )


class WatchedEngine:
    """The real engine; at each container start it notes which containers of ``watched`` run
    ids are still on the engine."""

    def __init__(self, env: Env, watched: list[str]) -> None:
        self._env = env
        self._watched = watched
        self.left_at_start: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env.engine, name)

    async def run(self, spec: RunSpec, on_output: OutputCallback | None, cancel: Any) -> RunResult:
        left = [
            str(c["Id"])
            for run_id in self._watched
            for c in self._env.docker.containers(
                all=True, filters={"label": f"{LABEL_RUN}={run_id}"}
            )
        ]
        self.left_at_start.append(left)
        return await self._env.engine.run(spec, on_output, cancel)

    async def cleanup_orphans(
        self, owned_run_ids: set[str], *, only_labels: Mapping[str, str] | None = None
    ) -> list[str]:
        return await self._env.engine.cleanup_orphans(owned_run_ids, only_labels=only_labels)


async def test_a_retry_removes_the_earlier_attempts_container_before_starting_its_own(
    env: Env,
) -> None:
    (env.tarball_dir / "ok.tar.gz").write_bytes(tarball(job_files("echo retried\n")))
    job_queue = f"jobs-{env.tag_prefix}"
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "ok.tar.gz"},
        queue=job_queue,
        retries=2,
    )
    task_id, first_id = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")
    worker = worker_info(env, "w")
    await env.queue.register_worker(worker)
    [task] = await env.queue.claim(
        worker.worker_id, 1, lease=timedelta(minutes=5), queues=[job_queue]
    )
    for status in (RunStatus.FETCHING, RunStatus.BUILDING, RunStatus.RUNNING):
        await env.runs.transition(first_id, status)
    # The engine restarted with live-restore: the first attempt's container still runs, while
    # its run was already ended (the sweep could not reach the engine to remove it then).
    earlier = start_container(env, job.name, first_id, env.runner.scope)
    try:
        await env.runs.transition(first_id, RunStatus.FAILED, error=INTERRUPTED)
        await env.queue.fail(
            worker.worker_id,
            [Failure(task_id=task.id, error="engine restarted", retry_at=datetime.now(UTC))],
        )
        [retry] = await env.queue.claim(
            worker.worker_id, 1, lease=timedelta(minutes=5), queues=[job_queue]
        )
        assert retry.id == task_id
        assert retry.attempts == 2

        watched = WatchedEngine(env, [first_id])
        runner = JobRunner(
            queue=env.queue,
            jobs=env.jobs,
            runs=env.runs,
            engine=watched,
            artifacts=env.artifacts,
            config=env.config,
            events=env.events,
        )
        assert runner.scope == env.runner.scope
        await runner.handle(TaskContext(task=retry, worker_id=worker.worker_id))
        await runner.close()

        assert watched.left_at_start == [[]], "the earlier container was there at the start"
        assert not exists(env, earlier)
        first, second = await env.runs.find_by_task(task_id)
        assert first.run_id == first_id
        assert first.status is RunStatus.FAILED
        assert second.attempt == 2
        assert second.status is RunStatus.SUCCEEDED, second.error
        assert env.output(second) == b"retried\n"
    finally:
        remove(env, earlier)
        await env.queue.deregister_worker(worker.worker_id)


async def test_the_periodic_sweep_removes_containers_of_runs_that_ended(env: Env) -> None:
    (env.tarball_dir / "s.tar.gz").write_bytes(tarball(job_files("sleep 60\n")))
    queues = {role: f"{role}-{env.tag_prefix}" for role in ("ended", "live")}
    runs: dict[str, str] = {}
    for role, queue in queues.items():
        job = await env.define(
            source="tarball_path", source_fields={"tarball_path": "s.tar.gz"}, queue=queue
        )
        _, runs[role] = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")
    # The live run: claimed by a live worker, under way.
    live = worker_info(env, "live")
    await env.queue.register_worker(live)
    await env.queue.claim(live.worker_id, 1, lease=timedelta(minutes=10), queues=[queues["live"]])
    for status in (RunStatus.FETCHING, RunStatus.BUILDING, RunStatus.RUNNING):
        await env.runs.transition(runs["live"], status)
    # The ended run: it failed while the engine was away; its container came back Exited.
    await env.runs.transition(runs["ended"], RunStatus.FAILED, error="engine went away")
    scope = env.runner.scope
    containers = {
        "ended": start_container(env, "j", runs["ended"], scope),
        "deleted": start_container(env, "j", uuid.uuid4().hex, scope),  # its run was pruned
        "live": start_container(env, "j", runs["live"], scope),
        "other scope": start_container(env, "j", runs["ended"], f"other-{env.tag_prefix}"),
    }
    env.docker.stop(containers["ended"], timeout=0)
    try:
        removed = await env.runner.sweep_interrupted()
        assert sorted(removed) == sorted([containers["ended"], containers["deleted"]])
        assert not exists(env, containers["ended"])
        assert not exists(env, containers["deleted"])
        assert env.docker.containers(filters={"id": containers["live"]}) != []
        assert exists(env, containers["other scope"])
        assert (await env.runs.get(runs["live"])).status is RunStatus.RUNNING
        assert await env.runner.sweep_interrupted() == []
        labelled = env.docker.containers(all=True, filters={"label": f"{LABEL_SCOPE}={scope}"})
        assert [str(c["Id"]) for c in labelled] == [containers["live"]]
    finally:
        remove(env, *containers.values())
        await env.queue.deregister_worker(live.worker_id)
