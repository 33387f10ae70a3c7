"""Soak benchmark: does ``serve`` keep a flat memory footprint as runs go by?

    python -m bench.soak [--runs 10000] [--step 1000] [--real-docker] [--postgres URL] [--json]

Opens the real ``serve`` runtime in this process (:func:`service.lifecycle.open_runtime`:
store, event store with retention, artifact store, job runner, scheduler, retention loops)
and a real :class:`service.worker.Worker` with the default options, defines one job from a
local tarball, and submits runs in rounds of ``--step`` until ``--runs`` have finished. After
each round it records the process's resident set size (``VmRSS``), without forcing a garbage
collection (the service's own collector settings apply: :func:`service.runtime.settle_heap`).

By default the container engine is a stand-in that answers at once (a few lines of output,
no artifacts): everything else is the product, and 10,000 runs take minutes instead of hours.
``--real-docker`` uses the Docker engine (the local busybox test image).

The result: RSS per round, and ``growth_ratio`` = RSS at the last round / RSS at the round
closest to 1,000 runs (target <= 1.10: flat within 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import service.lifecycle as lifecycle
from jobrunner.engine import BuildResult, RunResult, RunSpec
from jobrunner.engine import RunStatus as EngineStatus
from service.backends import open_store
from service.runtime import build_registry, settle_heap, worker_options
from service.settings import load_settings
from service.worker import Worker
from store.artifacts import ArtifactStore
from store.jobs.models import JobDefinition, RunStatus, RunTrigger

GROWTH_TARGET = 1.10
JOB = "soak"


class NoImages:
    """Image retention's view of an engine that keeps no images."""

    async def labelled_images(self, labels: Mapping[str, str]) -> list[Any]:
        return []

    async def remove_image(self, image_id: str) -> bool:
        return False

    async def remove_build_leftovers(self) -> list[str]:
        return []

    async def prune_build_cache(self, keep_bytes: int) -> int:
        return 0


class InstantEngine:
    """A container engine that runs nothing: every build is cached, every run succeeds at
    once with a few lines of output."""

    OUTPUT = b"a line of output from the job\n" * 4

    def __init__(self, artifacts: ArtifactStore, **_options: Any) -> None:
        # ``_options``: what the service passes the Docker engine (build cgroup, holder
        # spares, build journal), meaningless here.
        self._artifacts = artifacts
        self.images = NoImages()

    async def ping(self) -> None:
        return None

    async def cached_image(self, digest: str, *, scope: str | None = None) -> str | None:
        return "sha256:" + digest

    async def build(
        self,
        context_tar: Path,
        dockerfile: str,
        digest: str,
        labels: Mapping[str, str],
        *,
        network: str = "none",
    ) -> BuildResult:
        return BuildResult(image_id="sha256:" + digest, cached=True, log="")

    async def run(self, spec: RunSpec, on_output: Any, cancel: asyncio.Event) -> RunResult:
        if on_output is not None:
            await on_output(self.OUTPUT)
        size = len(self.OUTPUT)
        return RunResult(
            status=EngineStatus.SUCCEEDED,
            exit_code=0,
            output=self.OUTPUT,
            output_bytes=size,
            output_truncated=False,
        )

    async def cleanup_orphans(
        self, owned_run_ids: set[str], *, only_labels: Mapping[str, str] | None = None
    ) -> list[str]:
        return []

    async def run_containers(self, labels: Mapping[str, str]) -> set[str]:
        return set()

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _tarball(image: str) -> bytes:
    files = {
        "Dockerfile": f'FROM {image}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n'.encode(),
        "job.sh": b"echo a line of output from the job\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"job/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def run(*, runs: int, step: int, real: bool, database_url: str | None, tmp: Path) -> Any:
    image = "scratch"
    if real:
        from tests.integration.docker_images import (
            BUSYBOX_IMAGE,
            docker_client,
            ensure_busybox_image,
        )

        ensure_busybox_image(docker_client())
        image = BUSYBOX_IMAGE
    else:
        lifecycle.DockerEngine = InstantEngine  # type: ignore[attr-defined, assignment]
    (tmp / "tarballs").mkdir()
    (tmp / "tarballs" / "job.tar.gz").write_bytes(_tarball(image))
    env = {
        "WORKER_DATA_DIR": str(tmp / "data"),
        "WORKER_JOB_TARBALL_DIR": str(tmp / "tarballs"),
        "WORKER_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["WORKER_DATABASE_URL"] = database_url
    settings = load_settings(env)
    async with open_store(settings) as stores:
        definition = JobDefinition(
            name=JOB, source="tarball_path", source_fields={"tarball_path": "job.tar.gz"}
        )
        await stores.jobs.upsert(definition)
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    async with lifecycle.open_runtime(settings, role="serve") as runtime:
        settle_heap()
        stop = asyncio.Event()
        worker = Worker(
            runtime.stores.queue, build_registry(runtime.job_runner), worker_options(settings)
        )
        async with asyncio.TaskGroup() as group:
            working = group.create_task(worker.run(stop))
            try:
                done = 0
                while done < runs:
                    await _round(runtime, min(step, runs - done))
                    done += min(step, runs - done)
                    samples.append(
                        {
                            "runs": done,
                            "rss_mb": round(rss_mb(), 1),
                            "seconds": round(time.monotonic() - started, 1),
                        }
                    )
                    logging.getLogger("bench.soak").warning("%s", samples[-1])
            finally:
                stop.set()
            await working
    base = min(samples, key=lambda s: abs(s["runs"] - 1000))
    return {
        "samples": samples,
        "rss_at_1000_mb": base["rss_mb"],
        "rss_at_end_mb": samples[-1]["rss_mb"],
        "growth_ratio": round(samples[-1]["rss_mb"] / base["rss_mb"], 3),
        "target": GROWTH_TARGET,
        "settings": {
            "runs": runs,
            "step": step,
            "real_docker": real,
            "postgres": bool(database_url),
        },
    }


async def _round(runtime: lifecycle.Runtime, count: int) -> None:
    """Submit ``count`` runs and wait until every one is final."""
    ids = [
        (await runtime.job_runner.submit(JOB, trigger=RunTrigger.API, actor="bench"))[1]
        for _ in range(count)
    ]
    pending = set(ids)
    while pending:
        await asyncio.sleep(0.2)
        for run_id in list(pending):
            run = await runtime.stores.runs.get(run_id)
            if run is not None and run.status.is_final:
                if run.status is not RunStatus.SUCCEEDED:
                    # A soak of failing runs measures the wrong thing: stop at once.
                    raise RuntimeError(f"run {run_id} ended {run.status.value}: {run.error}")
                pending.discard(run_id)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--real-docker", action="store_true")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL database to use")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        result = asyncio.run(
            run(
                runs=args.runs,
                step=args.step,
                real=args.real_docker,
                database_url=args.postgres,
                tmp=Path(tmp),
            )
        )
    result["loadavg"] = [round(value, 2) for value in os.getloadavg()]
    if args.json:
        print(json.dumps(result))
    else:
        for sample in result["samples"]:
            print(f"{sample['runs']:>6} runs  {sample['rss_mb']:>7} MB  {sample['seconds']:>7} s")
        print(
            f"growth 1,000 -> {args.runs:,} runs: x{result['growth_ratio']} "
            f"(target <= {GROWTH_TARGET})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
