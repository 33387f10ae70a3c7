"""Console benchmark: the time of each console page with a large store behind it.

    python -m bench.console [--database-url URL] [--queued 100000] [--dead 10000]
                            [--runs 10000] [--requests 50] [--json]

The service is built as ``longshore serve`` builds it (``open_runtime``, role ``worker``) on a
fresh PostgreSQL database (created on the server of ``--database-url``, dropped afterwards),
loaded with ``--queued`` ready tasks, ``--dead`` dead-lettered tasks and ``--runs`` finished
runs of 50 jobs (one in ten failed), then served by
:func:`service.api_server.start_admin_api` on an ephemeral loopback port. A client signs in
through the console's form and requests every page ``--warmup`` + ``--requests`` times
(sequentially, over the real socket, keep-alive): the time from sending the request to
having read the whole page; p50, p99 and max per page. Target (issue 13): p99 <= 50 ms per
page. The overview's runs-per-hour chart is reused for 15 s (``CHART_SECONDS``), so most
overview samples do not read the 1,000 newest runs: ``overview_cold`` is one request with
that cache emptied. With ``--json`` one JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.api import BenchError, enqueue_chunks, make_dead, start_server, summary_ms, vacuum
from bench.queue import fresh_postgres_database
from service.api_server import AdminApi
from service.lifecycle import Runtime, open_runtime
from service.logs import configure_logging
from service.settings import load_settings
from store.jobs.errors import IllegalTransition
from store.jobs.models import JobDefinition, NewRun, RunStatus

logger = logging.getLogger("bench.console")

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:55432/postgres"
JOBS = 50
TARGET_P99_MS = 50.0
PAGES = (
    "/",
    "/jobs",
    "/jobs/bench-job-7",
    "/runs",
    "/runs?status=failed",
    "/runs?job=bench-job-7&hours=24",
    "/schedules",
    "/schedules/new",
    "/queues",
    "/tasks",
    "/tasks?state=ready",
    "/tasks?state=dead",
    "/tasks?state=ready&offset=9950",
    "/dead-letters",
    "/dead-letters?offset=5000",
    "/workers",
    "/audit",
    "/settings",
)


async def load_runs(runtime: Runtime, count: int) -> str:
    """``count`` finished runs over :data:`JOBS` jobs; returns the id of one."""
    jobs, runs = runtime.stores.jobs, runtime.stores.runs
    for index in range(JOBS):
        await jobs.upsert(
            JobDefinition(
                name=f"bench-job-{index}",
                source="git_tag",
                source_fields={"repo": "https://git.example.com/bench.git", "tag": "v1"},
            )
        )

    async def one(index: int) -> str:
        run = await runs.create(NewRun(job=f"bench-job-{index % JOBS}", actor="bench"))
        status = RunStatus.FAILED if index % 10 == 0 else RunStatus.SUCCEEDED
        await runs.transition(run.run_id, RunStatus.RUNNING)
        # The runtime's recovery may mark a run it sees running (with no worker) failed first.
        with contextlib.suppress(IllegalTransition):
            code = 1 if status == RunStatus.FAILED else 0
            await runs.transition(run.run_id, status, exit_code=code)
        return run.run_id

    last = ""
    for start in range(0, count, 100):
        ids = await asyncio.gather(*(one(i) for i in range(start, min(count, start + 100))))
        last = ids[-1]
    return last


async def measure(api: AdminApi, token: str, config: BenchConfig, run_id: str) -> dict[str, Any]:
    base = api.url.removesuffix("/admin/v1")
    result: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as client:
        signed = await client.post(
            "/sign-in",
            content=f"token={token}&next=/",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        if signed.status_code != 303:
            raise BenchError(f"sign-in: {signed.status_code} {signed.text[:200]}")
        worst = 0.0
        for path in (*PAGES, f"/runs/{run_id}"):
            samples: list[float] = []
            for index in range(config.warmup + config.requests):
                started = time.perf_counter()
                response = await client.get(path)
                elapsed = (time.perf_counter() - started) * 1000.0
                if response.status_code != 200:
                    raise BenchError(f"GET {path}: {response.status_code} {response.text[:300]}")
                if index >= config.warmup:
                    samples.append(elapsed)
            name = "run" if path.startswith("/runs/") else path
            stats = summary_ms("page", samples)
            result[name] = {
                "p50_ms": stats["page_p50_ms"],
                "p99_ms": stats["page_p99_ms"],
                "max_ms": stats["page_max_ms"],
            }
            worst = max(worst, stats["page_p99_ms"])
        app: Any = api.server.config.app
        app.state.console_chart = None
        started = time.perf_counter()
        await client.get("/")
        result["overview_cold_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    result["worst_p99_ms"] = worst
    return result


class BenchConfig(argparse.Namespace):
    database_url: str
    queued: int
    dead: int
    runs: int
    requests: int
    warmup: int


async def run(config: BenchConfig) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "console",
        "backend": "postgres",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "queued": config.queued,
        "dead": config.dead,
        "runs": config.runs,
    }
    token = secrets.token_urlsafe(24)
    prefix = "longshore_bench_console"
    async with fresh_postgres_database(config.database_url, prefix=prefix) as url:
        with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
            settings = load_settings({}, data_dir=Path(tmp) / "data", database_url=url)
            async with open_runtime(settings, role="worker") as runtime, AsyncExitStack() as stack:
                started = time.perf_counter()
                await enqueue_chunks(runtime.stores.queue, config.queued, ["bench-0", "bench-1"])
                await make_dead(runtime.stores.queue, config.dead)
                run_id = await load_runs(runtime, config.runs)
                await vacuum(url)
                result["load_seconds"] = round(time.perf_counter() - started, 2)
                api = await start_server(stack, runtime, token)
                result["pages"] = await measure(api, token, config, run_id)
    worst = result["pages"]["worst_p99_ms"]
    result["targets"] = {
        "page_p99_ms": {"target": f"<= {TARGET_P99_MS:g}", "value": worst},
    }
    result["targets"]["page_p99_ms"]["met"] = worst <= TARGET_P99_MS
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench.console", description="Console: page times with a large store."
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LONGSHORE_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL server (a fresh database is created on it and dropped afterwards)",
    )
    parser.add_argument("--queued", type=int, default=100_000, help="ready tasks")
    parser.add_argument("--dead", type=int, default=10_000, help="dead-lettered tasks")
    parser.add_argument("--runs", type=int, default=10_000, help="finished runs")
    parser.add_argument("--requests", type=int, default=50, help="requests measured per page")
    parser.add_argument("--warmup", type=int, default=5, help="requests per page not counted")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--log-level", default="WARNING", help="stderr log level")
    config = parser.parse_args(argv, namespace=BenchConfig())
    if min(config.queued, config.dead, config.warmup) < 0 or min(config.runs, config.requests) < 1:
        parser.error("sizes must not be negative; --runs and --requests at least 1")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    configure_logging(str(config.log_level).upper())
    try:
        result = asyncio.run(run(config))
    except BenchError as exc:
        print(f"bench.console: {exc}", file=sys.stderr)
        return 2
    if config.json:
        print(json.dumps(result))
    else:
        for path, stats in result["pages"].items():
            print(f"{path:36} {stats}")
        print(f"target page_p99_ms: {result['targets']['page_p99_ms']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
