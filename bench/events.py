"""Event store benchmark: append throughput, CSV export speed and memory, latest-N latency.

    python -m bench.events [--json] [--rows 1000000] [--appends 200000] [--writers 64]
                           [--directory DIR]

What it measures (targets from issue 5, on the reference machine: 2 cores):

- ``append_per_s`` (>= 50,000): ``--writers`` tasks in one process each call
  ``store.append`` in a loop (one small run event per call) with the default durability
  (``always``: acknowledged after fsync), ``--appends`` events in all. Group commit shares
  one fsync among the appends that arrive while the previous batch is written. Each writer
  has one append in flight, so a batch holds at most ``--writers`` events and the rate is
  at most ``writers / (fdatasync latency + CPU per batch)``.
- ``csv_export_mb_per_s`` (>= 100): a store holding ``--rows`` audit rows (written with
  ``append_many`` in chunks, then closed and reopened: ``open_seconds``) is exported as CSV
  with no filter; MB (10^6 bytes) of CSV produced per second of wall time. One row in
  ``--dirty-every`` (100) has a detail with quotes and a formula (``refused: "bad" spec,
  =cmd``). The rows are read from the audit CSV sidecars written at append time (see
  docs/events.md); rows without a valid sidecar frame would be transcoded from the JSONL.
- ``export_peak_rss_growth_mb`` (<= 50): the highest resident set size sampled (every
  5 ms) during the export minus the RSS just before it.
- ``latest25_ms`` (<= 5): median of 200 ``store.latest(AUDIT, target, 25)`` calls, one
  target among 1,000 in the ``--rows`` store; ``latest25_p99_ms`` too.

Each run uses a fresh temporary directory (removed afterwards) unless ``--directory`` is
given. ``load_average`` is recorded at the start and the end: other work on the machine
changes the numbers, so ``append_per_cpu_s`` and ``csv_export_mb_per_cpu_s`` give the same
rates per second of this process's CPU time (the appends also wait for fsync, so their CPU
rate is an upper bound). With ``--json`` only one JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from store.events import (
    AuditQuery,
    EventStoreOptions,
    EventType,
    ExportFormat,
    FileEventStore,
    NewEvent,
    Stream,
)

TARGETS: dict[str, tuple[str, float]] = {
    "append_per_s": (">=", 50_000.0),
    "csv_export_mb_per_s": (">=", 100.0),
    "export_peak_rss_growth_mb": ("<=", 50.0),
    "latest25_ms": ("<=", 5.0),
}
PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class _RssSampler:
    def __init__(self) -> None:
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


async def bench_append(directory: Path, total: int, writers: int) -> dict[str, Any]:
    store = await FileEventStore.open(EventStoreOptions(directory=directory))
    per_writer = total // writers

    async def writer(number: int) -> None:
        job = f"job-{number % 50}"
        for i in range(per_writer):
            await store.append(
                NewEvent.run(
                    EventType.RUN_STARTED,
                    job=job,
                    run_id=f"run-{number}-{i // 10}",
                    state="running",
                    attempt=1,
                )
            )

    try:
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(writer(n) for n in range(writers)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await store.close()
    return {
        "append_per_s": round(per_writer * writers / elapsed),
        "append_per_cpu_s": round(per_writer * writers / cpu),
        "append_events": per_writer * writers,
    }


async def fill_audit(directory: Path, rows: int, dirty_every: int) -> float:
    store = await FileEventStore.open(EventStoreOptions(directory=directory))
    started = time.perf_counter()
    try:
        chunk = 10_000
        for first in range(0, rows, chunk):
            batch = []
            for i in range(first, min(first + chunk, rows)):
                target = f"job-{i % 1000}"
                batch.append(
                    NewEvent(
                        stream=Stream.AUDIT,
                        key=target,
                        type=EventType.AUDIT_RECORDED,
                        data={
                            "actor": "CN=operator-7,O=Longshore",
                            "requestId": f"req-{i:09d}",
                            "action": "job.run" if i % 3 else "schedule.pause",
                            "target": target,
                            "status": "ok" if i % 17 else "error",
                            "payloadHash": "9f86d081884c7d659a2feaa0c55ad015"
                            "a3bf4f1b2b0b822cd15d6c15b0f00a08",
                            "detail": 'refused: "bad" spec, =cmd'
                            if i % dirty_every == 0
                            else "queued run",
                        },
                    )
                )
            await store.append_many(batch)
    finally:
        await store.close()
    return time.perf_counter() - started


async def bench_read(directory: Path) -> dict[str, Any]:
    started = time.perf_counter()
    store = await FileEventStore.open(EventStoreOptions(directory=directory))
    open_seconds = time.perf_counter() - started
    try:
        timings = []
        for i in range(200):
            t0 = time.perf_counter()
            got = await store.latest(Stream.AUDIT, f"job-{(i * 37) % 1000}", 25)
            timings.append((time.perf_counter() - t0) * 1000)
            assert len(got) == 25
        timings.sort()
        baseline = _rss_bytes()
        size = 0
        with _RssSampler() as sampler:
            t0, cpu = time.perf_counter(), time.process_time()
            async for chunk in store.export_audit(AuditQuery(), ExportFormat.CSV):
                size += len(chunk)
            export_seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    finally:
        await store.close()
    return {
        "open_seconds": round(open_seconds, 2),
        "latest25_ms": round(statistics.median(timings), 3),
        "latest25_p99_ms": round(timings[int(len(timings) * 0.99) - 1], 3),
        "csv_export_mb": round(size / 1e6, 1),
        "csv_export_seconds": round(export_seconds, 2),
        "csv_export_mb_per_s": round(size / 1e6 / export_seconds, 1),
        "csv_export_mb_per_cpu_s": round(size / 1e6 / cpu, 1),
        "export_peak_rss_growth_mb": round((sampler.peak - baseline) / 1e6, 1),
    }


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "rows": args.rows,
        "writers": args.writers,
    }
    result.update(await bench_append(root / "append", args.appends, args.writers))
    result["dirty_every"] = args.dirty_every
    fill = await fill_audit(root / "audit", args.rows, args.dirty_every)
    result["fill_seconds"] = round(fill, 1)
    result.update(await bench_read(root / "audit"))
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    checks = {}
    for name, (op, target) in TARGETS.items():
        value = result[name]
        checks[name] = value >= target if op == ">=" else value <= target
    result["targets"] = {name: f"{op} {target:g}" for name, (op, target) in TARGETS.items()}
    result["targets_met"] = checks
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=200_000)
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--directory", type=Path, default=None)
    parser.add_argument(
        "--dirty-every",
        type=int,
        default=100,
        help="one audit row in N has a detail that needs escaping and neutralising",
    )
    args = parser.parse_args(argv)
    root = args.directory or Path(tempfile.mkdtemp(prefix="bench-events-"))
    try:
        result = asyncio.run(run(args, root))
    finally:
        if args.directory is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:28} {value}")
    return 0 if all(result["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
