"""The ``job.run`` handler end to end: real Docker, real git over HTTPS on loopback, real TLS
for tarball URLs, the SQLite store (and PostgreSQL for the happy path), driven through a real
:class:`service.worker.Worker`.

Base images are imported locally (``docker_images.py``); no registry is reached.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrunner.config import RunnerConfig
from jobrunner.docker_engine import DockerEngine
from jobrunner.engine import LABEL_JOB, LABEL_RUN
from jobrunner.errors import JobNotFound
from jobrunner.runner import JobRunner
from service.runtime import build_registry
from service.worker import Worker, WorkerOptions
from store.artifacts import ArtifactStore
from store.events import Event, EventStoreOptions, EventType, FileEventStore, NewEvent
from store.jobs.models import JobDefinition, Run, RunStatus, RunTrigger
from store.queue.models import TaskState
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image
from tests.integration.git_server import GitServer, WorkRepo

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def job_files(script: str) -> dict[str, bytes]:
    return {
        "Dockerfile": (
            f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n'.encode()
        ),
        "job.sh": script.encode(),
    }


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"proj-1.0/{name}")
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def docker_api() -> Any:
    api = docker_client()
    ensure_busybox_image(api)
    return api


@dataclass
class Env:
    runner: JobRunner
    jobs: Any
    runs: Any
    queue: Any
    artifacts: ArtifactStore
    server: GitServer
    repo: WorkRepo
    tarball_dir: Path
    docker: Any
    tag_prefix: str
    events: FileEventStore
    config: RunnerConfig
    engine: DockerEngine

    async def define(self, **fields: Any) -> JobDefinition:
        name = fields.pop("name", f"job-{uuid.uuid4().hex[:10]}")
        saved, _ = await self.jobs.upsert(JobDefinition(name=name, **fields))
        return saved

    def git_job(self, tag: str) -> dict[str, Any]:
        return {
            "source": "git_tag",
            "source_fields": {"repo": self.server.url("jobs.git"), "tag": tag},
        }

    async def run_until(
        self, done: Callable[[], Awaitable[bool]], *, timeout: float = 40.0
    ) -> None:
        """Run a worker until ``done()`` holds."""
        registry = build_registry(self.runner)
        options = WorkerOptions(
            concurrency=4, poll_interval=0.1, heartbeat_interval=1.0, shutdown_grace=5.0
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(self.queue, registry, options).run(stop))
        try:
            deadline = time.monotonic() + timeout
            while not await done():
                assert time.monotonic() < deadline, "timed out waiting for the job run"
                assert not worker.done(), "the worker stopped"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await worker

    async def task_settled(self, task_id: int) -> bool:
        task = await self.queue.get_task(task_id)
        return task is None or task.state in (TaskState.DEAD, TaskState.DONE)

    async def run_job(self, name: str) -> tuple[int, list[Run]]:
        task_id, _ = await self.runner.submit(name, trigger=RunTrigger.API, actor="tester")
        await self.run_until(lambda: self.task_settled(task_id))
        return task_id, await self.runs.find_by_task(task_id)

    def output(self, run: Run) -> bytes:
        assert run.output_sha256 is not None
        with self.artifacts.open(run.output_sha256) as blob:
            return blob.read()


async def make_env(
    tmp_path: Path, docker_api: Any, backend: str, database_url: str | None = None
) -> AsyncIterator[Env]:
    server = GitServer(tmp_path / "srv").start()
    repo = WorkRepo.create(server.root / "jobs.git")
    repo.commit(job_files("echo hello from v1\n"), "v1")
    prefix = uuid.uuid4().hex[:8]
    repo.tag(f"v1-{prefix}")
    server.serve("jobs.git")
    tarball_dir = tmp_path / "tarballs"
    tarball_dir.mkdir()
    config = RunnerConfig(
        work_dir=tmp_path / "work",
        repo_allowlist=(server.tls.url("/"),),
        tarball_allowlist=("127.0.0.1",),
        tarball_dir=tarball_dir,
        ca_file=server.tls.write_ca(tmp_path / "ca.pem"),
        allow_private_hosts=True,
        git_timeout=20.0,
        tarball_timeout=10.0,
    )
    artifacts = ArtifactStore(tmp_path / "artifacts")
    engine = DockerEngine(artifacts)
    events = await FileEventStore.open(EventStoreOptions(directory=tmp_path / "events"))
    db: Any
    if backend == "sqlite":
        from store.db.sqlite import SqliteDatabase
        from store.jobs.sqlite import SqliteJobStore, SqliteRunStore
        from store.queue.sqlite import SqliteTaskQueue

        db = await SqliteDatabase.open(str(tmp_path / "longshore.db"))
        await db.migrate()
        queue: Any = SqliteTaskQueue(db, key_retention=timedelta(days=1))
        jobs: Any = SqliteJobStore(db)
        runs: Any = SqliteRunStore(db)
    else:
        from store.db.postgres import PostgresDatabase
        from store.jobs.postgres import PostgresJobStore, PostgresRunStore
        from store.queue.postgres import PostgresTaskQueue

        assert database_url is not None
        db = await PostgresDatabase.open(database_url)
        await db.migrate()
        queue = PostgresTaskQueue(db, key_retention=timedelta(days=1))
        jobs = PostgresJobStore(db)
        runs = PostgresRunStore(db)
    runner = JobRunner(
        queue=queue,
        jobs=jobs,
        runs=runs,
        engine=engine,
        artifacts=artifacts,
        config=config,
        default_queue=f"jobs-{prefix}",
        retry_base_delay=0.1,
        events=events,
    )
    try:
        yield Env(
            runner=runner,
            jobs=jobs,
            runs=runs,
            queue=queue,
            artifacts=artifacts,
            server=server,
            repo=repo,
            tarball_dir=tarball_dir,
            docker=docker_api,
            tag_prefix=prefix,
            events=events,
            config=config,
            engine=engine,
        )
    finally:
        await events.close()
        await queue.close()
        await db.close()
        engine.close()
        server.close()


@pytest.fixture
async def env(tmp_path: Path, docker_api: Any) -> AsyncIterator[Env]:
    async for value in make_env(tmp_path, docker_api, "sqlite"):
        yield value


def job_queue(env: Env) -> dict[str, Any]:
    return {"queue": f"jobs-{env.tag_prefix}"}


async def test_git_tag_job_builds_runs_caches_and_rebuilds_when_the_tag_moves(env: Env) -> None:
    tag = f"v1-{env.tag_prefix}"
    job = await env.define(**env.git_job(tag), **job_queue(env))
    _, [first] = await env.run_job(job.name)
    assert first.status is RunStatus.SUCCEEDED, first.error
    assert first.commit_sha == env.repo.head()
    assert first.exit_code == 0
    assert env.output(first) == b"hello from v1\n"
    assert first.source_sha256 is not None
    assert env.artifacts.exists(first.source_sha256)
    assert first.image_id

    _, [second] = await env.run_job(job.name)
    assert second.status is RunStatus.SUCCEEDED
    assert second.image_id == first.image_id
    assert second.building_at is not None

    env.repo.commit(job_files("echo hello from v2\n"), "v2")
    env.repo.tag(tag)
    _, [third] = await env.run_job(job.name)
    assert third.status is RunStatus.SUCCEEDED, third.error
    assert third.commit_sha == env.repo.head() != first.commit_sha
    assert third.image_id != first.image_id
    assert env.output(third) == b"hello from v2\n"


async def test_tarball_url_and_tarball_path_jobs_run(env: Env) -> None:
    data = tarball(job_files(f"echo from a tarball {env.tag_prefix}\n"))
    sha = hashlib.sha256(data).hexdigest()
    env.server.tls.routes["/proj.tar.gz"] = data
    (env.tarball_dir / "proj.tar.gz").write_bytes(data)

    by_url = await env.define(
        source="tarball_url",
        source_fields={"tarball_url": env.server.tls.url("/proj.tar.gz"), "tarball_sha256": sha},
        **job_queue(env),
    )
    by_path = await env.define(
        source="tarball_path", source_fields={"tarball_path": "proj.tar.gz", "tarball_sha256": sha}
    )
    for job in (by_url, by_path):
        _, [run] = await env.run_job(job.name)
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.source_sha256 == sha
        assert env.output(run) == f"from a tarball {env.tag_prefix}\n".encode()


async def test_wrong_sha256_is_refused_before_anything_is_built(env: Env) -> None:
    data = tarball(job_files(f"echo never {env.tag_prefix}\n"))
    env.server.tls.routes["/bad.tar.gz"] = data
    job = await env.define(
        source="tarball_url",
        source_fields={
            "tarball_url": env.server.tls.url("/bad.tar.gz"),
            "tarball_sha256": "0" * 64,
        },
        retries=3,
    )
    task_id, [run] = await env.run_job(job.name)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "ChecksumMismatch" in run.error
    assert run.building_at is None
    assert run.image_id is None
    task = await env.queue.get_task(task_id)
    assert task.state is TaskState.DEAD
    assert task.attempts == 1
    assert "ChecksumMismatch" in task.last_error
    assert env.docker.images(filters={"label": f"{LABEL_JOB}={job.name}"}) == []


async def test_non_zero_exit_is_retried_then_dead_lettered_one_run_per_attempt(env: Env) -> None:
    data = tarball(job_files(f"echo failing {env.tag_prefix}\nexit 3\n"))
    (env.tarball_dir / "fail.tar.gz").write_bytes(data)
    job = await env.define(
        source="tarball_path", source_fields={"tarball_path": "fail.tar.gz"}, retries=2
    )
    task_id, runs = await env.run_job(job.name)
    assert [run.attempt for run in runs] == [1, 2, 3]
    assert all(run.status is RunStatus.FAILED and run.exit_code == 3 for run in runs)
    assert len({run.run_id for run in runs}) == 3
    task = await env.queue.get_task(task_id)
    assert task.state is TaskState.DEAD
    assert "JobRunFailed" in task.last_error


async def test_cancelling_a_running_run_stops_it_and_leaves_no_container(env: Env) -> None:
    data = tarball(job_files(f"echo started {env.tag_prefix}\nsleep 60\n"))
    (env.tarball_dir / "sleep.tar.gz").write_bytes(data)
    job = await env.define(
        source="tarball_path", source_fields={"tarball_path": "sleep.tar.gz"}, retries=2
    )
    task_id, run_id = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="tester")
    cancelled = False

    async def done() -> bool:
        nonlocal cancelled
        run = await env.runs.get(run_id)
        if run.status is RunStatus.RUNNING and not cancelled:
            await asyncio.sleep(0.5)
            await env.runs.request_cancel(run_id)
            cancelled = True
        return run.status.is_final and await env.task_settled(task_id)

    started = time.monotonic()
    await env.run_until(done)
    assert time.monotonic() - started < 30
    run = await env.runs.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert await env.runs.find_by_task(task_id) == [run]
    assert await env.queue.get_task(task_id) is None  # completed: no retry, no DLQ
    left = env.docker.containers(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
    assert left == []


async def test_artifacts_are_recorded_and_their_bytes_match(env: Env) -> None:
    script = (
        "mkdir -p /artifacts/sub\n"
        "echo report > /artifacts/report.txt\n"
        "head -c 5000 /dev/zero > /artifacts/sub/zeros.bin\n"
    )
    (env.tarball_dir / "art.tar.gz").write_bytes(tarball(job_files(script)))
    job = await env.define(source="tarball_path", source_fields={"tarball_path": "art.tar.gz"})
    _, [run] = await env.run_job(job.name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert {a.name for a in run.artifacts} == {"report.txt", "sub/zeros.bin"}
    for artifact in run.artifacts:
        with env.artifacts.open(artifact.sha256) as blob:
            data = blob.read()
        assert hashlib.sha256(data).hexdigest() == artifact.sha256
        assert len(data) == artifact.size_bytes
    assert run.artifact("sub/zeros.bin") is not None


async def test_an_artifact_name_that_is_not_utf8_cannot_break_the_run_record(env: Env) -> None:
    script = "printf ok > \"/artifacts/bad$(printf '\\377')name.txt\"\n"
    (env.tarball_dir / "bad-name.tar.gz").write_bytes(tarball(job_files(script)))
    job = await env.define(source="tarball_path", source_fields={"tarball_path": "bad-name.tar.gz"})
    _, [run] = await env.run_job(job.name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.exit_code == 0
    assert [a.name for a in run.artifacts] == ["bad\\xffname.txt"]
    with env.artifacts.open(run.artifacts[0].sha256) as blob:
        assert blob.read() == b"ok"


async def test_submit_refuses_an_unknown_job(env: Env) -> None:
    with pytest.raises(JobNotFound):
        await env.runner.submit("no-such-job", trigger=RunTrigger.API, actor="tester")


# --- run events -------------------------------------------------------------------------------

STATUS_EVENTS = [
    EventType.RUN_QUEUED,
    EventType.RUN_FETCH_STARTED,
    EventType.RUN_BUILD_STARTED,
    EventType.RUN_STARTED,
]


def status_events(events: list[Event]) -> list[Event]:
    """The status events of a run: not its output, nor a ``RunWaiting`` (a step waited out
    an engine fault, as a loaded shared engine may give: the run goes on in its status)."""
    return [
        e for e in events if e.type not in (EventType.RUN_OUTPUT_EMITTED, EventType.RUN_WAITING)
    ]


def output_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type == EventType.RUN_OUTPUT_EMITTED]


async def test_a_run_emits_an_event_per_transition_with_its_fields_and_live_output(
    env: Env,
) -> None:
    lines = [f"line {i} {env.tag_prefix}" for i in range(5)]
    script = "".join(f"echo '{line}'\nsleep 0.2\n" for line in lines)
    (env.tarball_dir / "ev.tar.gz").write_bytes(tarball(job_files(script)))
    job = await env.define(source="tarball_path", source_fields={"tarball_path": "ev.tar.gz"})
    task_id, run_id = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="tester")
    seen_running: list[int] = []

    async def done() -> bool:
        run = await env.runs.get(run_id)
        if run.status is RunStatus.RUNNING:
            got = output_events(await env.events.by_run(run_id))
            seen_running.append(len(got))
        return await env.task_settled(task_id)

    await env.run_until(done)
    run = await env.runs.get(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    events = await env.events.by_run(run_id)
    assert [e.id for e in events] == sorted(e.id for e in events)
    statuses = status_events(events)
    assert [e.type for e in statuses] == [*STATUS_EVENTS, EventType.RUN_SUCCEEDED]
    assert all(e.key == job.name and e.run_id == run_id for e in events)
    assert [e.data["status"] for e in statuses] == [
        "queued",
        "fetching",
        "building",
        "running",
        "succeeded",
    ]
    for event in statuses:
        assert event.data["runId"] == run_id
        assert event.data["job"] == job.name
        assert event.data["attempt"] == 1
        assert event.data["trigger"] == "api"
        assert event.data["actor"] == "tester"
        assert event.data["scheduleName"] is None
        assert event.data["queuedAt"] is not None
    _queued, fetching, building, running, final = statuses
    assert fetching.data["fetchingAt"] is not None
    assert building.data["sourceSha256"] == run.source_sha256
    assert running.data["imageId"] == run.image_id
    assert running.data["runningAt"] is not None
    assert final.data["finishedAt"] is not None
    assert final.data["exitCode"] == 0
    assert final.data["error"] is None
    assert final.data["outputBytes"] == run.output_bytes
    assert final.data["outputTruncated"] is False
    assert final.data["outputEventsDropped"] == 0
    # Output as events: between RunStarted and the final event, in order, every line.
    outputs = output_events(events)
    assert outputs
    assert running.id < outputs[0].id
    assert outputs[-1].id < final.id
    assert [e.data["seq"] for e in outputs] == list(range(len(outputs)))
    text = "".join(e.data["text"] for e in outputs)
    assert text == env.output(run).decode()
    assert text.splitlines() == lines
    assert final.data["outputEvents"] == len(outputs)
    # ... and live: some arrived while the run was still running.
    assert any(count > 0 for count in seen_running)


async def test_chatty_output_is_coalesced_into_bounded_events(env: Env) -> None:
    script = 'i=0\nwhile [ $i -lt 3000 ]; do echo "line number $i"; i=$((i+1)); done\n'
    (env.tarball_dir / "chatty.tar.gz").write_bytes(tarball(job_files(script)))
    job = await env.define(source="tarball_path", source_fields={"tarball_path": "chatty.tar.gz"})
    _, [run] = await env.run_job(job.name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    outputs = output_events(await env.events.by_run(run.run_id))
    assert len(outputs) < 3000 / 10  # coalesced, not one per line
    assert all(e.data["bytes"] <= 8 * 1024 for e in outputs)
    assert all(e.data["text"].endswith("\n") for e in outputs)  # cut at line ends
    text = "".join(e.data["text"] for e in outputs)
    assert text == env.output(run).decode()
    assert text.splitlines()[-1] == "line number 2999"


class FailingEvents:
    """An event store that refuses every append (or is very slow with ``delay``)."""

    def __init__(self, delay: float | None = None) -> None:
        self.delay = delay
        self.appended: list[NewEvent] = []

    async def append(self, event: NewEvent) -> Any:
        if self.delay is None:
            raise OSError("disk on fire")
        await asyncio.sleep(self.delay)
        self.appended.append(event)
        return None


def runner_with_events(env: Env, events: Any) -> JobRunner:
    return JobRunner(
        queue=env.queue,
        jobs=env.jobs,
        runs=env.runs,
        engine=env.engine,
        artifacts=env.artifacts,
        config=env.config,
        default_queue=f"jobs-{env.tag_prefix}",
        retry_base_delay=0.1,
        events=events,
    )


async def test_a_failing_event_store_never_fails_a_run(env: Env) -> None:
    (env.tarball_dir / "ok.tar.gz").write_bytes(tarball(job_files("echo fine\n")))
    job = await env.define(source="tarball_path", source_fields={"tarball_path": "ok.tar.gz"})
    env.runner = runner_with_events(env, FailingEvents())
    _, [run] = await env.run_job(job.name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert env.output(run) == b"fine\n"


async def test_a_slow_event_store_drops_live_output_but_the_run_keeps_all_of_it(
    env: Env,
) -> None:
    script = 'i=0\nwhile [ $i -lt 40000 ]; do echo "line number $i"; i=$((i+1)); done\n'
    (env.tarball_dir / "slow.tar.gz").write_bytes(tarball(job_files(script)))
    job = await env.define(source="tarball_path", source_fields={"tarball_path": "slow.tar.gz"})
    slow = FailingEvents(delay=0.5)
    env.runner = runner_with_events(env, slow)
    started = time.monotonic()
    _, [run] = await env.run_job(job.name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert time.monotonic() - started < 30
    expected = b"".join(b"line number %d\n" % i for i in range(40000))
    assert run.output_bytes == len(expected)
    final = slow.appended[-1]
    assert final.type == EventType.RUN_SUCCEEDED
    assert final.data["outputEventsDropped"] > 0


@pytest.mark.postgres
async def test_git_tag_job_on_postgres(
    tmp_path: Path, docker_api: Any, postgres_database_url: str
) -> None:
    async for env in make_env(tmp_path, docker_api, "postgres", postgres_database_url):
        job = await env.define(**env.git_job(f"v1-{env.tag_prefix}"), **job_queue(env))
        _, [run] = await env.run_job(job.name)
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.commit_sha == env.repo.head()
        assert env.output(run) == b"hello from v1\n"
