"""Run retention benchmark: pruning 100,000 runs on PostgreSQL while the API answers.

    python -m bench.retention [--database-url URL] [--runs 100000] [--jobs 100] [--keep 10]
                              [--blobs 10000] [--reps 1] [--json]

Each repetition, on a fresh database ``longshore_bench_retention_<random>`` of the server
``--database-url`` names (dropped at the end):

1. ``--runs`` finished runs of ``--jobs`` jobs are inserted with SQL (created two days ago,
   one failure in 50), each referencing its own output blob; ``--blobs`` of those blobs
   are written to the artifact store (so freeing them costs real file removals);
2. the admin API of ``serve`` is started on loopback, and ``GET /runs?limit=50`` is timed
   back to back for 3 s (the baseline);
3. a :class:`~jobrunner.run_retention.RunPruner` with ``keep_last=--keep``,
   ``keep_for=0`` and the default batch prunes every job while ``GET /runs?limit=50`` keeps
   being timed back to back.

Reported per repetition: the prune's seconds, runs deleted, blobs and bytes freed, and the
latency of ``GET /runs`` (p50, p99, max) before and during the prune; the summary has the
medians over the repetitions. Target: p99 of ``GET /runs`` during the prune <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.api import start_server
from bench.queue import fresh_postgres_database, percentile
from jobrunner.run_retention import RetentionRule, RunPruner, RunRetention
from service.lifecycle import open_runtime
from service.settings import load_settings

logger = logging.getLogger("bench.retention")

P99_TARGET_MS = 50.0
BASELINE_SECONDS = 3.0

_LOAD = """
INSERT INTO runs (run_id, job, attempt, trigger_kind, status, queued_at, running_at,
                  finished_at, exit_code, output_bytes, output_sha256, updated_at)
SELECT md5('run' || n), 'job-' || (n % $2), 1, 'schedule',
       CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
       now() - interval '2 days' + n * interval '1 ms',
       now() - interval '2 days' + n * interval '1 ms',
       now() - interval '2 days' + n * interval '1 ms',
       CASE WHEN n % 50 = 0 THEN 1 ELSE 0 END, 120,
       encode(sha256(('output ' || n)::bytea), 'hex'), now()
FROM generate_series(1, $1) AS n
"""
_INDEX = "INSERT INTO run_blobs (run_seq, sha256) SELECT seq, output_sha256 FROM runs"


def _latency(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "requests": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2),
    }


async def _time_requests(client: httpx.AsyncClient, until: asyncio.Event | float) -> list[float]:
    samples: list[float] = []
    deadline = until if isinstance(until, float) else None
    while True:
        if isinstance(until, asyncio.Event) and until.is_set():
            return samples
        if deadline is not None and time.monotonic() >= deadline:
            return samples
        started = time.perf_counter()
        response = await client.get("/runs", params={"limit": 50})
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET /runs: {response.status_code} {response.text[:200]}")


async def _load(url: str, artifacts_root: Path, *, runs: int, jobs: int, blobs: int) -> float:
    started = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(_LOAD, runs, jobs)
        await connection.execute(_INDEX)
        digests = await connection.fetch(
            "SELECT output_sha256 FROM runs ORDER BY seq LIMIT $1", blobs
        )
        await connection.execute("VACUUM (ANALYZE) runs")
        await connection.execute("VACUUM (ANALYZE) run_blobs")
    finally:
        await connection.close()
    two_days_ago = time.time() - 2 * 86400
    for row in digests:
        digest = row["output_sha256"]
        path = artifacts_root / "sha256" / digest[:2] / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"output of a run\n" * 8)
        os.utime(path, (two_days_ago, two_days_ago))
    return time.perf_counter() - started


async def one_rep(server: str, *, runs: int, jobs: int, keep: int, blobs: int) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    async with fresh_postgres_database(server, prefix="longshore_bench_retention") as url:
        with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp:
            settings = load_settings({}, data_dir=Path(tmp) / "data", database_url=url)
            async with open_runtime(settings, role="worker") as runtime, AsyncExitStack() as stack:
                load_s = await _load(url, runtime.artifacts.root, runs=runs, jobs=jobs, blobs=blobs)
                api = await start_server(stack, runtime, token)
                headers = {"Authorization": f"Bearer {token}"}
                async with httpx.AsyncClient(
                    base_url=api.url, headers=headers, trust_env=False, timeout=30
                ) as client:
                    baseline = await _time_requests(client, time.monotonic() + BASELINE_SECONDS)
                    retention = RunRetention(
                        default=RetentionRule(keep_last=keep, keep_for=timedelta(0))
                    )
                    pruner = RunPruner(
                        runs=runtime.stores.runs, artifacts=runtime.artifacts, retention=retention
                    )
                    done = asyncio.Event()
                    timing = asyncio.ensure_future(_time_requests(client, done))
                    try:
                        report = await pruner.prune()
                    finally:
                        done.set()
                    during = await timing
                left = (await runtime.stores.runs.list_runs(limit=0, offset=0)).total
    return {
        "load_seconds": round(load_s, 2),
        "prune_seconds": round(report.seconds, 2),
        "runs_deleted": report.runs_deleted,
        "runs_left": left,
        "blobs_freed": report.blobs_freed,
        "bytes_freed": report.bytes_freed,
        "get_runs_idle": _latency(baseline),
        "get_runs_during_prune": _latency(during),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    reps = []
    for number in range(args.reps):
        rep = await one_rep(
            args.database_url, runs=args.runs, jobs=args.jobs, keep=args.keep, blobs=args.blobs
        )
        logger.warning("rep %d: %s", number + 1, rep)
        reps.append(rep)

    def median(pick: Any) -> float:
        return round(float(statistics.median(pick(rep) for rep in reps)), 2)

    p99 = median(lambda rep: rep["get_runs_during_prune"]["p99_ms"])
    return {
        "benchmark": "retention",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "settings": {
            "runs": args.runs,
            "jobs": args.jobs,
            "keep": args.keep,
            "blobs": args.blobs,
            "reps": args.reps,
        },
        "median_prune_seconds": median(lambda rep: rep["prune_seconds"]),
        "median_get_runs_p99_idle_ms": median(lambda rep: rep["get_runs_idle"]["p99_ms"]),
        "median_get_runs_p99_during_prune_ms": p99,
        "target_p99_ms": P99_TARGET_MS,
        "target_met": p99 <= P99_TARGET_MS,
        "reps": reps,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "LONGSHORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/postgres"
        ),
        help="a PostgreSQL server (a fresh database is made on it per repetition)",
    )
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--keep", type=int, default=10)
    parser.add_argument("--blobs", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"prune of {args.runs:,} runs to {args.keep} per job: "
            f"{result['median_prune_seconds']} s (median of {args.reps}); GET /runs p99 "
            f"{result['median_get_runs_p99_during_prune_ms']} ms during, "
            f"{result['median_get_runs_p99_idle_ms']} ms idle (target <= {P99_TARGET_MS} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
