"""Job runner benchmark: what a job run costs on top of the container it runs.

    python -m bench.runner [--runs 20] [--reruns 5] [--no-events] [--json]

What it measures (see docs/benchmarks.md, "Job runner"):

- **overhead_ratio**: a trivial job (the local busybox image, ``echo hi``, from a tarball
  path) whose image is already built. The *runner* time of one run is from just before
  :meth:`JobRunner.submit` until the run record is final (observed on the run store's
  ``transition`` as it returns: no polling), executed by a real :class:`service.worker.Worker`
  (default options) on a fresh SQLite store, with a :class:`FileEventStore` (default
  durability) unless ``--no-events``. The *direct* time is the docker SDK alone: create,
  start, wait and remove a container of the same image with the same command. ``--runs``
  of each, interleaved (one runner run, one direct run, ...) after one warm-up of each; the
  ratio is median runner / median direct (target <= 1.25).
  ``overhead_ratio_same_container`` divides by a third, interleaved series instead: the same
  direct calls on the container the runner makes (its safety options and the artifacts
  volume) plus the runner's two stats of the untouched ``/artifacts`` (``HEAD`` of the
  archive, before the start and after the exit), which isolates the runner's own cost.
  ``overhead_ratio_same_container_read_back`` divides by a fourth series that reads the
  empty ``/artifacts`` back with ``get_archive`` instead (what every run did before).
- **cached_rerun_ratio**: a job from a git tag served over HTTPS on loopback (git's own
  ``http-backend`` behind real TLS, as the integration tests do). One run builds the image;
  then ``--reruns`` runs of the unchanged tag are timed as above; the ratio is their median
  against the median runner time of the trivial job (target <= 1.3: resolving the tag is
  the only extra work, no fetch of unchanged content and no rebuild).

Each runner run also reports where its time went, from the run record's timestamps:
``claim`` (submit to ``fetching``: enqueue, worker wake-up and claim, the run lookup),
``fetch`` (fetching to building: the source fetched, verified and stored), ``build``
(building to running: context check and the image cache lookup) and ``run`` (running to the
final record: container create/start/wait/remove, artifacts, output storage, the final
write), plus ``tail`` from the final record's timestamp to when ``transition`` returned.

With ``--json`` one JSON object goes to stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import json
import logging
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Unpack

import docker  # type: ignore[import-untyped, unused-ignore]

from jobrunner.config import RunnerConfig
from jobrunner.docker_engine import DockerEngine
from jobrunner.docker_engine.sdk import create_container, path_stat
from jobrunner.engine import RunSpec
from jobrunner.runner import JobRunner
from service.runtime import build_registry
from service.worker import Worker, WorkerOptions
from store.artifacts import ArtifactStore
from store.db.sqlite import SqliteDatabase
from store.events import EventStoreOptions, FileEventStore
from store.jobs.models import JobDefinition, Run, RunFields, RunStatus, RunTrigger
from store.jobs.protocol import RunStore
from store.jobs.sqlite import SqliteJobStore, SqliteRunStore
from store.queue.sqlite import SqliteTaskQueue
from tests.integration.docker_images import BUSYBOX_IMAGE, ensure_busybox_image
from tests.integration.git_server import GitServer, WorkRepo

logger = logging.getLogger("bench.runner")

COMMAND = ("echo", "hi")
OVERHEAD_TARGET = 1.25
RERUN_TARGET = 1.3
DOCKERFILE = f"FROM {BUSYBOX_IMAGE}\n".encode()


class BenchError(RuntimeError):
    pass


class WatchedRuns:
    """A run store that tells when a run's record became final (as ``transition``
    returns), so the benchmark measures without polling the database."""

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner
        self.finished: dict[str, asyncio.Future[tuple[float, Run]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def expect(self, run_id: str) -> asyncio.Future[tuple[float, Run]]:
        future: asyncio.Future[tuple[float, Run]] = asyncio.get_running_loop().create_future()
        self.finished[run_id] = future
        return future

    async def transition(self, run_id: str, status: RunStatus, **fields: Unpack[RunFields]) -> Run:
        run = await self._inner.transition(run_id, status, **fields)
        if status.is_final:
            future = self.finished.pop(run_id, None)
            if future is not None and not future.done():
                future.set_result((time.perf_counter(), run))
        return run


@dataclass
class Sample:
    total_ms: float
    stages_ms: dict[str, float]
    status: str


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def _stages(run: Run, submitted_wall: float, done_wall: float) -> dict[str, float]:
    """Milliseconds per stage from the run record's timestamps (wall clock)."""
    points = [
        ("claim", run.fetching_at),
        ("fetch", run.building_at),
        ("build", run.running_at),
        ("run", run.finished_at),
    ]
    stages: dict[str, float] = {}
    last = submitted_wall
    for name, moment in points:
        if moment is None:
            continue
        stamp = moment.timestamp()
        stages[name] = _ms(stamp - last)
        last = stamp
    stages["tail"] = _ms(done_wall - last)
    return stages


class Interfered(BenchError):
    """The run failed because something else touched its container (another process's
    orphan sweep on a shared Docker engine): the sample is taken again."""


async def _runner_sample(
    runner: JobRunner, runs: WatchedRuns, job: str, retried: list[str]
) -> Sample:
    for _ in range(3):
        try:
            return await _runner_run(runner, runs, job)
        except Interfered as exc:
            logger.warning("sample retried: %s", exc)
            retried.append(str(exc))
    raise BenchError(f"runs of {job} kept failing: {retried[-1]}")


async def _runner_run(runner: JobRunner, runs: WatchedRuns, job: str) -> Sample:
    submitted_wall = time.time()
    started = time.perf_counter()
    _, run_id = await runner.submit(job, trigger=RunTrigger.API, actor="bench")
    future = runs.expect(run_id)
    # ``submit`` returns once the task and run are stored; the worker may already be done.
    current = await runs.get(run_id)
    if current is not None and current.status.is_final:
        runs.finished.pop(run_id, None)
        finished, run = time.perf_counter(), current
    else:
        finished, run = await asyncio.wait_for(future, 120)
    done_wall = submitted_wall + (finished - started)
    if run.status is not RunStatus.SUCCEEDED:
        if run.error and "EngineUnavailable" in run.error:
            raise Interfered(f"run {run_id} of {job}: {run.error}")
        raise BenchError(f"run {run_id} of {job} ended {run.status}: {run.error}")
    return Sample(
        total_ms=_ms(finished - started),
        stages_ms=_stages(run, submitted_wall, done_wall),
        status=run.status.value,
    )


def _direct_run(api: Any, image: str) -> float:
    started = time.perf_counter()
    container = api.create_container(image, command=list(COMMAND))
    container_id = container["Id"]
    try:
        api.start(container_id)
        code = api.wait(container_id)["StatusCode"]
    finally:
        api.remove_container(container_id, v=True, force=True)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise BenchError(f"the direct container exited with {code}")
    return _ms(elapsed)


def _direct_same_container(api: Any, image: str, *, read_back: bool = False) -> float:
    """The direct run with the container the runner makes (same safety options, the
    artifacts volume) and the runner's docker calls for an untouched ``/artifacts``: its
    stat (``HEAD`` of the archive) before the start and after the exit, but none of the
    runner. With ``read_back``, the empty ``/artifacts`` is read back with ``get_archive``
    instead, as every run did before the stat check."""
    spec = RunSpec(image=image, command=COMMAND)
    path = spec.artifacts_path
    assert path is not None
    started = time.perf_counter()
    container_id = create_container(api, spec, 64)
    try:
        before = None if read_back else path_stat(api, container_id, path)
        api.start(container_id)
        code = api.wait(container_id)["StatusCode"]
        if read_back:
            chunks, _ = api.get_archive(container_id, path)
            for _chunk in chunks:
                pass
        elif path_stat(api, container_id, path) != before:
            raise BenchError("the untouched /artifacts changed its stat")
    finally:
        api.remove_container(container_id, v=True, force=True)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise BenchError(f"the direct container exited with {code}")
    return _ms(elapsed)


def _summary(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "p90_ms": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
    }


def _stage_medians(samples: Sequence[Sample]) -> dict[str, float]:
    names = sorted({name for sample in samples for name in sample.stages_ms})
    return {
        name: round(statistics.median(s.stages_ms.get(name, 0.0) for s in samples), 2)
        for name in names
    }


async def run(*, runs_count: int, reruns: int, events: bool, tmp: Path) -> dict[str, Any]:
    api = docker.APIClient(version="auto")
    ensure_busybox_image(api)
    tarball_dir = tmp / "tarballs"
    tarball_dir.mkdir()
    (tarball_dir / "echo.tar.gz").write_bytes(_tarball({"Dockerfile": DOCKERFILE}))

    git = GitServer(tmp / "srv").start()
    repo = WorkRepo.create(git.root / "bench.git")
    repo.commit({"Dockerfile": DOCKERFILE}, "bench")
    tag = f"bench-{os.getpid()}"
    repo.tag(tag)
    git.serve("bench.git")

    config = RunnerConfig(
        work_dir=tmp / "work",
        repo_allowlist=(git.tls.url("/"),),
        tarball_dir=tarball_dir,
        ca_file=git.tls.write_ca(tmp / "ca.pem"),
        allow_private_hosts=True,
    )
    artifacts = ArtifactStore(tmp / "artifacts")
    engine = DockerEngine(artifacts, artifact_holder_spares=1)
    db = await SqliteDatabase.open(str(tmp / "longshore.db"))
    await db.migrate()
    queue = SqliteTaskQueue(db, key_retention=timedelta(days=1))
    jobs = SqliteJobStore(db)
    watched = WatchedRuns(SqliteRunStore(db))
    event_store = (
        await FileEventStore.open(EventStoreOptions(directory=tmp / "events")) if events else None
    )
    runner = JobRunner(
        queue=queue,
        jobs=jobs,
        runs=watched,  # a RunStore by delegation (``__getattr__``)
        engine=engine,
        artifacts=artifacts,
        config=config,
        events=event_store,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(queue, build_registry(runner), WorkerOptions()).run(stop))
    try:
        await jobs.upsert(
            JobDefinition(
                name="bench-echo",
                source="tarball_path",
                source_fields={"tarball_path": "echo.tar.gz"},
                command=COMMAND,
            )
        )
        await jobs.upsert(
            JobDefinition(
                name="bench-git",
                source="git_tag",
                source_fields={"repo": git.url("bench.git"), "tag": tag},
                command=COMMAND,
            )
        )
        # Warm-up: builds (and caches) both images, opens every connection.
        retried: list[str] = []
        first = await _runner_sample(runner, watched, "bench-echo", retried)
        git_first = await _runner_sample(runner, watched, "bench-git", retried)
        image = (await watched.latest_for_job("bench-echo")).image_id
        assert image is not None
        await asyncio.to_thread(_direct_run, api, image)

        runner_samples: list[Sample] = []
        direct_ms: list[float] = []
        same_ms: list[float] = []
        read_back_ms: list[float] = []
        await asyncio.to_thread(_direct_same_container, api, image)
        for _ in range(runs_count):
            runner_samples.append(await _runner_sample(runner, watched, "bench-echo", retried))
            direct_ms.append(await asyncio.to_thread(_direct_run, api, image))
            same_ms.append(await asyncio.to_thread(_direct_same_container, api, image))
            read_back_ms.append(
                await asyncio.to_thread(
                    functools.partial(_direct_same_container, api, image, read_back=True)
                )
            )
        rerun_samples = [await _runner_run(runner, watched, "bench-git") for _ in range(reruns)]
    finally:
        stop.set()
        await worker
        if event_store is not None:
            await event_store.close()
        await queue.close()
        await db.close()
        await engine.aclose()  # its spare artifacts holder too
        git.close()
        api.close()

    runner_ms = [s.total_ms for s in runner_samples]
    rerun_ms = [s.total_ms for s in rerun_samples]
    runner_median = statistics.median(runner_ms)
    overhead = runner_median / statistics.median(direct_ms)
    rerun_ratio = statistics.median(rerun_ms) / runner_median
    return {
        "overhead_ratio": round(overhead, 3),
        "overhead_target": OVERHEAD_TARGET,
        "overhead_ok": overhead <= OVERHEAD_TARGET,
        "cached_rerun_ratio": round(rerun_ratio, 3),
        "cached_rerun_target": RERUN_TARGET,
        "cached_rerun_ok": rerun_ratio <= RERUN_TARGET,
        "overhead_ratio_same_container": round(runner_median / statistics.median(same_ms), 3),
        "overhead_ratio_same_container_read_back": round(
            runner_median / statistics.median(read_back_ms), 3
        ),
        "runner": {**_summary(runner_ms), "stages_median_ms": _stage_medians(runner_samples)},
        "direct": _summary(direct_ms),
        "direct_same_container": _summary(same_ms),
        "direct_same_container_read_back": _summary(read_back_ms),
        "cached_rerun": {**_summary(rerun_ms), "stages_median_ms": _stage_medians(rerun_samples)},
        "warmup_ms": {"tarball_first_run": first.total_ms, "git_first_run": git_first.total_ms},
        "raw": {
            "runner_ms": runner_ms,
            "direct_ms": direct_ms,
            "direct_same_container_ms": same_ms,
            "direct_same_container_read_back_ms": read_back_ms,
            "cached_rerun_ms": rerun_ms,
            "runner_stages_ms": [s.stages_ms for s in runner_samples],
            "cached_rerun_stages_ms": [s.stages_ms for s in rerun_samples],
        },
        "samples_retried": retried,
        "settings": {"runs": runs_count, "reruns": reruns, "events": events},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.runner",
        description="Overhead of a Longshore job run over the bare container, and of a "
        "cached git-tag rerun.",
    )
    parser.add_argument("--runs", type=int, default=20, help="runner and direct runs each")
    parser.add_argument("--reruns", type=int, default=5, help="timed reruns of the git tag")
    parser.add_argument(
        "--no-events", action="store_true", help="run without an event store attached"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        result = await run(
            runs_count=args.runs, reruns=args.reruns, events=not args.no_events, tmp=Path(tmp)
        )
    load_after = os.getloadavg()
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": [round(value, 2) for value in load_before],
        "loadavg_end": [round(value, 2) for value in load_after],
    }
    return result


def _print(result: dict[str, Any], as_json: bool, out: Callable[[str], Any] = print) -> None:
    if as_json:
        out(json.dumps(result))
        return
    out(
        f"overhead_ratio {result['overhead_ratio']} (target <= {OVERHEAD_TARGET}): runner "
        f"median {result['runner']['median_ms']} ms, direct {result['direct']['median_ms']} ms"
    )
    out(
        f"cached_rerun_ratio {result['cached_rerun_ratio']} (target <= {RERUN_TARGET}): "
        f"median {result['cached_rerun']['median_ms']} ms"
    )
    out(f"runner stages (median ms): {result['runner']['stages_median_ms']}")
    out(f"cached rerun stages (median ms): {result['cached_rerun']['stages_median_ms']}")
    out(f"load average: {result['machine']['loadavg_start']} -> {result['machine']['loadavg_end']}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        result = asyncio.run(_main(args))
    except BenchError as exc:
        print(f"bench.runner: {exc}", file=sys.stderr)
        return 1
    _print(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
