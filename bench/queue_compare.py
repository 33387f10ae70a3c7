"""Longshore and PgQueuer side by side: interleaved repetitions in one run, medians, ratio.

    python -m bench.queue_compare --database-url postgresql://postgres@127.0.0.1:55432/postgres \\
        [--reps 5] [--tasks 20000] [--backlog N] [--sqlite] [--json]

Each repetition runs, one after the other in this process, the Longshore PostgreSQL
measurement of :mod:`bench.queue` (its own fresh database), the same with PgQueuer (its own
fresh database; see :mod:`bench._pgqueuer`), and with ``--sqlite`` the Longshore SQLite
measurement (a fresh file). Interleaving spreads whatever else the machine is doing over all
of them alike; the medians of the repetitions are compared. The verdicts are the queue
targets: PostgreSQL drain >= 1.5x PgQueuer's (floor 1x), p50 <= 2.5 ms and p99 <= 4 ms;
SQLite drain >= 8,000/s and p99 <= 4 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from bench.queue import BenchConfig, BenchError, run_longshore
from service.logs import configure_logging

FIGURES = ("throughput_per_s", "latency_p50_ms", "latency_p99_ms", "cpu_us_per_task")
RATIO_TARGET = 1.5
RATIO_FLOOR = 1.0


def _config(backend: str, args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        backend=backend,
        database_url=args.database_url if backend == "postgres" else None,
        tasks=args.tasks,
        backlog=args.backlog,
        backlog_method=None,
        latency_samples=args.latency_samples,
        latency_warmup=20,
        latency_gap_ms=20.0,
        reuse=False,
        compare_pgqueuer=False,
        library=False,
        phase_order="throughput-first",
        concurrency=None,
        claim_batch=None,
    )


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        key: round(statistics.median(run[key] for run in runs), 2)
        for key in FIGURES
        if runs and all(isinstance(run.get(key), int | float) for run in runs)
    }


def _picked(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in FIGURES if key in result}


async def compare(args: argparse.Namespace) -> dict[str, Any]:
    from bench._pgqueuer import run_pgqueuer

    runs: dict[str, list[dict[str, Any]]] = {"longshore_postgres": [], "pgqueuer": []}
    if args.sqlite:
        runs["longshore_sqlite"] = []
    loads: list[float] = []
    for rep in range(args.reps):
        loads.append(round(os.getloadavg()[0], 2))
        runs["longshore_postgres"].append(_picked(await run_longshore(_config("postgres", args))))
        pgq = await run_pgqueuer(
            args.database_url,
            tasks=args.tasks,
            backlog=args.backlog,
            latency_samples=args.latency_samples,
            latency_warmup=20,
            latency_gap=0.02,
        )
        runs["pgqueuer"].append(_picked(pgq))
        if args.sqlite:
            runs["longshore_sqlite"].append(_picked(await run_longshore(_config("sqlite", args))))
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    medians = {name: _medians(found) for name, found in runs.items()}
    ratio = round(
        medians["longshore_postgres"]["throughput_per_s"] / medians["pgqueuer"]["throughput_per_s"],
        2,
    )
    ratios = [
        round(ours["throughput_per_s"] / theirs["throughput_per_s"], 2)
        for ours, theirs in zip(runs["longshore_postgres"], runs["pgqueuer"], strict=True)
    ]
    pg = medians["longshore_postgres"]
    verdicts = {
        "postgres_drain_vs_pgqueuer >= 1.5x": ratio >= RATIO_TARGET,
        "postgres_drain_vs_pgqueuer >= 1x in every repetition": min(ratios) >= RATIO_FLOOR,
        "postgres_latency_p50_ms <= 2.5": pg["latency_p50_ms"] <= 2.5,
        "postgres_latency_p99_ms <= 4": pg["latency_p99_ms"] <= 4.0,
    }
    if args.sqlite:
        lite = medians["longshore_sqlite"]
        verdicts["sqlite_throughput_per_s >= 8000"] = lite["throughput_per_s"] >= 8000
        verdicts["sqlite_latency_p99_ms <= 4"] = lite["latency_p99_ms"] <= 4.0
    return {
        "reps": args.reps,
        "tasks": args.tasks,
        "backlog": args.backlog,
        "medians": medians,
        "drain_ratio_of_medians": ratio,
        "drain_ratio_per_repetition": ratios,
        "verdicts": verdicts,
        "runs": runs,
        "loadavg_1m_at_each_repetition": loads,
        "cpus": os.cpu_count(),
    }


def summary(result: dict[str, Any]) -> str:
    lines = [f"{result['reps']} interleaved repetitions, {result['tasks']} tasks, medians:"]
    for name, figures in result["medians"].items():
        lines.append(
            f"  {name:<20} {figures.get('throughput_per_s', 0):>9.1f} tasks/s  "
            f"p50 {figures.get('latency_p50_ms', 0):.2f} ms  "
            f"p99 {figures.get('latency_p99_ms', 0):.2f} ms"
        )
    lines.append(
        f"  drain ratio Longshore/PgQueuer: {result['drain_ratio_of_medians']} "
        f"(per repetition {result['drain_ratio_per_repetition']})"
    )
    for verdict, met in result["verdicts"].items():
        lines.append(f"  {verdict}: {'met' if met else 'MISSED'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_compare", description=__doc__)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=0)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--sqlite", action="store_true", help="also Longshore on SQLite")
    parser.add_argument("--json", action="store_true", help="print only one JSON object")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.tasks < 1 or args.latency_samples < 1:
        parser.error("--reps, --tasks and --latency-samples must be positive")
    configure_logging(str(args.log_level).upper())
    try:
        result = asyncio.run(compare(args))
    except BenchError as exc:
        print(f"bench.queue_compare: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
