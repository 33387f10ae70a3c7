"""Queue benchmark: drain throughput and wake-up latency of the real Longshore worker.

    python -m bench.queue --backend sqlite|postgres [--database-url URL] [--tasks N]
                          [--backlog N] [--library] [--compare-pgqueuer] [--reuse] [--json]

What it measures (see docs/benchmarks.md):

- **throughput**: ``--tasks`` ``builtin.noop`` tasks are enqueued first (``enqueue_many``
  in chunks), then one :class:`service.worker.Worker` with the builtin registry and the
  default settings (concurrency 8, claim batch 32) is started; the clock runs from its
  start until it has run every task and shut down cleanly (results written, deregistered).
- **latency**: on an idle queue, ``--latency-samples`` single ``bench.probe`` tasks are
  enqueued one at a time, each after the worker has gone back to waiting; the probe
  handler records ``time.perf_counter()`` at handler start minus the timestamp taken just
  before ``enqueue`` was called (carried in the payload). Same process, same clock.
- ``--backlog N`` first loads N tasks into another queue, scheduled a year ahead (waiting,
  never claimable), to show whether the worker's cost grows with the size of the table.
- ``--library`` runs both phases through the public library instead (``bench._library``):
  a :class:`longshore.Client`, typed handlers (a pydantic payload, a context) and
  :class:`longshore.Worker` with the same settings, to show what the library path costs.

Every run gets a fresh database (a temporary SQLite file, or ``bench_<random>`` created on
the PostgreSQL server named by ``--database-url`` and dropped afterwards) unless
``--reuse`` is given. With ``--json`` only one JSON object goes to stdout; logs go to
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from service.backends import open_queue
from service.logs import configure_logging
from service.runtime import build_registry, worker_options
from service.settings import Settings, load_settings
from service.worker import HandlerRegistry, Worker
from store.queue.handlers import TaskContext
from store.queue.models import NewTask
from store.queue.protocol import TaskQueue

logger = logging.getLogger("bench.queue")

THROUGHPUT_QUEUE = "bench"
LATENCY_QUEUE = "bench-latency"
BACKLOG_QUEUE = "bench-backlog"
PROBE_HANDLER = "bench.probe"
NOOP_HANDLER = "builtin.noop"
ENQUEUE_CHUNK = 5_000
# A worker that runs no task for this long is stuck (or dead): the run is aborted.
STALL_SECONDS = 60.0

# The targets on the reference machine (2 cores, PostgreSQL local). A target that
# is absent for a backend is not checked.
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    # Drain against PgQueuer (>= 1.5x its median) is judged by bench.queue_compare.
    "postgres": {
        "throughput_per_s": (">=", 5_000.0),
        "latency_p50_ms": ("<=", 2.5),
        "latency_p99_ms": ("<=", 4.0),
    },
    "sqlite": {
        "throughput_per_s": (">=", 8_000.0),
        "latency_p99_ms": ("<=", 4.0),
    },
}


class BenchError(Exception):
    """The benchmark cannot run (bad arguments, a database it must not touch, ...)."""


# --- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation between ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(samples_ms: Sequence[float]) -> dict[str, Any]:
    return {
        "latency_samples": len(samples_ms),
        "latency_p50_ms": round(percentile(samples_ms, 50), 3),
        "latency_p90_ms": round(percentile(samples_ms, 90), 3),
        "latency_p99_ms": round(percentile(samples_ms, 99), 3),
        "latency_max_ms": round(max(samples_ms), 3) if samples_ms else math.nan,
        "latency_mean_ms": (
            round(sum(samples_ms) / len(samples_ms), 3) if samples_ms else math.nan
        ),
    }


def check_targets(backend: str, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    checked: dict[str, dict[str, Any]] = {}
    for key, (op, bound) in TARGETS.get(backend, {}).items():
        value = result.get(key)
        if not isinstance(value, int | float):
            continue
        met = value >= bound if op == ">=" else value <= bound
        checked[key] = {"target": f"{op} {bound:g}", "value": value, "met": met}
    return checked


# --- databases -----------------------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@asynccontextmanager
async def fresh_postgres_database(server_url: str, prefix: str = "bench") -> AsyncIterator[str]:
    """Create ``<prefix>_<random>`` on the server of ``server_url``; drop it on exit."""
    import asyncpg

    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    logger.info("created database %s", name)
    try:
        yield _with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        logger.info("dropped database %s", name)


def _sqlite_path(url: str) -> Path:
    rest = url[len("sqlite:") :]
    return Path(rest[2:] if rest.startswith("//") else rest)


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@asynccontextmanager
async def bench_database(backend: str, url: str | None, *, reuse: bool) -> AsyncIterator[str]:
    """The database URL to benchmark against, fresh unless ``reuse``."""
    if backend == "postgres":
        if not url or url.split(":", 1)[0] not in {"postgresql", "postgres"}:
            raise BenchError("--backend postgres needs --database-url postgresql://...")
        if reuse:
            yield url
            return
        async with fresh_postgres_database(url) as fresh:
            yield fresh
        return
    if url is not None and not url.startswith("sqlite:"):
        raise BenchError("--backend sqlite needs a sqlite:///path URL (or none)")
    if url is not None:
        path = _sqlite_path(url)
        if path.exists() and not reuse:
            raise BenchError(f"{path} exists: pass --reuse to use it, or name a new file")
        try:
            yield f"sqlite://{path.resolve()}"
        finally:
            if not reuse:
                _remove_sqlite_files(path)
        return
    directory = tempfile.mkdtemp(prefix="longshore-bench-")
    try:
        yield f"sqlite://{Path(directory) / 'bench.db'}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- loading -------------------------------------------------------------------------------


async def enqueue_in_chunks(
    queue: TaskQueue,
    count: int,
    *,
    queue_name: str,
    run_at: datetime | None = None,
    chunk: int = ENQUEUE_CHUNK,
    handler: str = NOOP_HANDLER,
) -> float:
    """Enqueue ``count`` no-op tasks with ``enqueue_many``; return the seconds."""
    started = time.perf_counter()
    done = 0
    last_report = started
    while done < count:
        size = min(chunk, count - done)
        batch = [NewTask(handler=handler, queue=queue_name, run_at=run_at) for _ in range(size)]
        await queue.enqueue_many(batch)
        done += size
        now = time.perf_counter()
        if now - last_report > 10:
            last_report = now
            logger.info(
                "enqueued %d/%d into %s (%.0f/s)", done, count, queue_name, done / (now - started)
            )
    return time.perf_counter() - started


async def load_backlog(queue: TaskQueue, count: int, *, method: str, url: str) -> None:
    """Put ``count`` tasks into :data:`BACKLOG_QUEUE`, scheduled a year ahead.

    ``api``: ``enqueue_many`` in chunks of :data:`ENQUEUE_CHUNK` (any backend).
    ``sql`` (PostgreSQL only, and only here, in the benchmark): one task is enqueued
    through the API and ``count - 1`` copies of its row are inserted with one
    ``INSERT ... SELECT ... generate_series``, then the table is vacuumed and analyzed and
    a checkpoint is taken: autovacuum and the checkpointer do all of that soon after such
    a load, and a backlog that has been waiting is in that state. Without it the run being
    measured would share the machine with autovacuum's first pass over a million fresh
    rows and with the flush of their dirty pages. Same rows, minutes faster.
    """
    far = datetime.now(UTC) + timedelta(days=365)
    if method == "api" or count == 1:
        await enqueue_in_chunks(queue, count, queue_name=BACKLOG_QUEUE, run_at=far)
        return
    if not url.startswith(("postgresql:", "postgres:")):
        raise BenchError("--backlog-method sql is only for PostgreSQL")
    import asyncpg

    template = await queue.enqueue(NewTask(handler=NOOP_HANDLER, queue=BACKLOG_QUEUE, run_at=far))
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            """
            INSERT INTO tasks (queue, handler, payload, priority, run_at, retry, max_attempts)
            SELECT t.queue, t.handler, t.payload, t.priority, t.run_at, t.retry, t.max_attempts
            FROM tasks AS t, generate_series(2, $2::bigint)
            WHERE t.id = $1
            """,
            template.task.id,
            count,
        )
        await connection.execute("VACUUM (ANALYZE) tasks")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


# --- measurements --------------------------------------------------------------------------


class LatencyProbe:
    """The ``bench.probe`` handler: records enqueue -> handler-start latency."""

    def __init__(self) -> None:
        self.samples_ms: list[float] = []
        self._arrived: asyncio.Future[None] | None = None

    async def handle(self, context: TaskContext) -> None:
        self.record(context.task.payload)

    def record(self, payload: dict[str, Any]) -> None:
        """A probe started now: record its latency (``payload["t"]``: when it was sent)."""
        started = time.perf_counter()
        sent = payload.get("t")
        if isinstance(sent, int | float):
            self.samples_ms.append((started - float(sent)) * 1000.0)
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    def expect(self) -> asyncio.Future[None]:
        self._arrived = asyncio.get_running_loop().create_future()
        return self._arrived


def bench_registry(probe: LatencyProbe) -> HandlerRegistry:
    """The builtin registry (what ``longshore serve`` runs) plus the latency probe."""
    registry = build_registry()
    registry.register(PROBE_HANDLER, probe.handle)
    return registry


class Counting(Protocol):
    """A running worker, as the measurements see it."""

    @property
    def processed(self) -> int: ...


RunningWorker = Callable[[], AbstractAsyncContextManager[Counting]]
"""Starts a worker for the duration of a block (stopping it cleanly at the end)."""


@dataclass(frozen=True, kw_only=True)
class Harness:
    """What the phases run on: the queue, the no-op handler's name, the worker to start."""

    queue: TaskQueue
    noop_handler: str
    running: RunningWorker


@asynccontextmanager
async def builtin_harness(settings: Settings, probe: LatencyProbe) -> AsyncIterator[Harness]:
    """The built-in handlers (what ``longshore serve`` runs) on :class:`service.worker.Worker`."""
    registry = bench_registry(probe)
    async with open_queue(settings) as queue:
        yield Harness(
            queue=queue,
            noop_handler=NOOP_HANDLER,
            running=lambda: running_worker(queue, registry, settings),
        )


@asynccontextmanager
async def running_worker(
    queue: TaskQueue, registry: HandlerRegistry, settings: Settings
) -> AsyncIterator[Worker]:
    worker = Worker(queue, registry, worker_options(settings))
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop), name="bench-worker")
    try:
        yield worker
    finally:
        stop.set()
        await runner


async def measure_throughput(harness: Harness, tasks: int) -> dict[str, Any]:
    """Run the worker over ``tasks`` pre-enqueued noop tasks; time start -> clean stop."""
    queue = harness.queue
    started, cpu_started = time.perf_counter(), time.process_time()
    async with harness.running() as worker:
        progress, last_change = 0, started
        while worker.processed < tasks:
            await asyncio.sleep(0.005)
            if worker.processed != progress:
                progress, last_change = worker.processed, time.perf_counter()
            elif time.perf_counter() - last_change > STALL_SECONDS:
                raise BenchError(f"worker stalled after {progress}/{tasks} tasks")
        handled = time.perf_counter()
    finished, cpu = time.perf_counter(), time.process_time() - cpu_started
    info = await queue.get_queue(THROUGHPUT_QUEUE)
    completed = info.completed if info else 0
    if completed != tasks or (info is not None and (info.ready or info.running)):
        raise BenchError(f"expected {tasks} completed tasks in {THROUGHPUT_QUEUE!r}, found {info}")
    seconds = finished - started
    return {
        "throughput_per_s": round(tasks / seconds, 1),
        "drain_seconds": round(seconds, 3),
        "handlers_done_seconds": round(handled - started, 3),
        # This process's CPU time per task: what the worker costs, little swayed by other
        # work on a shared machine (unlike the wall-clock throughput).
        "cpu_us_per_task": round(cpu / tasks * 1e6, 1),
    }


async def measure_latency(
    harness: Harness,
    probe: LatencyProbe,
    *,
    samples: int,
    warmup: int,
    gap: float,
) -> dict[str, Any]:
    """Enqueue probes one at a time on an idle queue; the worker waits between them."""
    queue = harness.queue
    async with harness.running():
        await asyncio.sleep(0.5)  # registered, first claim done, maintenance pass over
        for index in range(warmup + samples):
            if index == warmup:
                probe.samples_ms.clear()
            arrived = probe.expect()
            sent = time.perf_counter()
            await queue.enqueue(
                NewTask(handler=PROBE_HANDLER, queue=LATENCY_QUEUE, payload={"t": sent})
            )
            try:
                await asyncio.wait_for(arrived, timeout=10)
            except TimeoutError:
                raise BenchError(f"probe {index} did not start within 10 s") from None
            # Let the worker write the result, find nothing more and go back to waiting.
            await asyncio.sleep(gap)
    if len(probe.samples_ms) != samples:
        raise BenchError(f"expected {samples} latency samples, got {len(probe.samples_ms)}")
    return latency_summary(probe.samples_ms)


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    backend: str
    database_url: str | None
    tasks: int
    backlog: int
    backlog_method: str | None
    latency_samples: int
    latency_warmup: int
    latency_gap_ms: float
    reuse: bool
    compare_pgqueuer: bool
    library: bool
    phase_order: str
    concurrency: int | None
    claim_batch: int | None


def _settings(config: BenchConfig, url: str) -> Settings:
    overrides: dict[str, Any] = {"database_url": url}
    if config.concurrency is not None:
        overrides["concurrency"] = config.concurrency
    if config.claim_batch is not None:
        overrides["claim_batch"] = config.claim_batch
    # env={}: the defaults, not whatever WORKER_* variables this shell happens to have.
    return load_settings(env={}, **overrides)


async def run_longshore(config: BenchConfig) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": config.backend, "tasks": config.tasks}
    async with bench_database(config.backend, config.database_url, reuse=config.reuse) as url:
        settings = _settings(config, url)
        result["backlog"] = config.backlog
        result["concurrency"] = settings.concurrency
        result["claim_batch"] = settings.claim_batch
        result["handlers"] = "library" if config.library else "builtin"
        probe = LatencyProbe()
        if config.library:
            from bench._library import library_harness

            opened = library_harness(settings, url, probe)
        else:
            opened = builtin_harness(settings, probe)
        async with opened as harness:
            queue = harness.queue
            if config.backlog:
                method = config.backlog_method or ("sql" if config.backend == "postgres" else "api")
                started = time.perf_counter()
                await load_backlog(queue, config.backlog, method=method, url=url)
                seconds = time.perf_counter() - started
                result["backlog_method"] = method
                result["backlog_load_seconds"] = round(seconds, 2)
                logger.info("backlog of %d loaded in %.1f s", config.backlog, seconds)

            async def latency_phase() -> dict[str, Any]:
                latency = await measure_latency(
                    harness,
                    probe,
                    samples=config.latency_samples,
                    warmup=config.latency_warmup,
                    gap=config.latency_gap_ms / 1000.0,
                )
                logger.info("latency: %s", latency)
                return latency

            async def throughput_phase() -> dict[str, Any]:
                seconds = await enqueue_in_chunks(
                    queue, config.tasks, queue_name=THROUGHPUT_QUEUE, handler=harness.noop_handler
                )
                throughput = {"enqueue_per_s": round(config.tasks / seconds, 1)}
                throughput.update(await measure_throughput(harness, config.tasks))
                logger.info("throughput: %s", throughput)
                return throughput

            if config.phase_order == "latency-first":
                latency = await latency_phase()
                throughput = await throughput_phase()
            else:
                throughput = await throughput_phase()
                latency = await latency_phase()

            if config.backlog:
                info = await queue.get_queue(BACKLOG_QUEUE)
                if info is None or info.scheduled != config.backlog:
                    raise BenchError(f"backlog queue changed during the run: {info}")
        result.update(throughput)
        result.update(latency)
        result["phase_order"] = config.phase_order
        result["latency_warmup"] = config.latency_warmup
        result["latency_gap_ms"] = config.latency_gap_ms
    return result


async def run(config: BenchConfig) -> dict[str, Any]:
    load_before = os.getloadavg()
    result = await run_longshore(config)
    result["targets"] = check_targets(config.backend, result)
    if config.compare_pgqueuer:
        from bench._pgqueuer import run_pgqueuer

        assert config.database_url is not None
        pgq = await run_pgqueuer(
            config.database_url,
            tasks=config.tasks,
            backlog=config.backlog,
            latency_samples=config.latency_samples,
            latency_warmup=config.latency_warmup,
            latency_gap=config.latency_gap_ms / 1000.0,
            phase_order=config.phase_order,
        )
        result["pgqueuer"] = pgq
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the machine skews every figure: 1-minute load average when the
        # run started and when it ended.
        "loadavg_1m_start": round(load_before[0], 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }
    return result


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[BenchConfig, bool, str]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.queue",
        description="Throughput and latency of the Longshore worker on its durable queue.",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    parser.add_argument(
        "--database-url",
        help="postgres: the server to create a fresh bench_<random> database on "
        "(or the database itself with --reuse); sqlite: sqlite:///path (default: temp file)",
    )
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks drained (throughput)")
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="tasks first put into another queue, scheduled a year ahead",
    )
    parser.add_argument(
        "--backlog-method",
        choices=["api", "sql"],
        help="how to load the backlog: api = enqueue_many in chunks of 5,000 (sqlite "
        "default), sql = bulk INSERT of copies of one enqueued task (postgres default)",
    )
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument(
        "--latency-warmup", type=int, default=20, help="probes run first and not counted"
    )
    parser.add_argument(
        "--latency-gap-ms",
        type=float,
        default=20.0,
        help="pause after each probe so that the worker is idle again",
    )
    parser.add_argument(
        "--phase-order",
        choices=["throughput-first", "latency-first"],
        default="throughput-first",
        help="both phases share one process and connection pool; latency-first drains "
        "with a worker that has been idle on an empty queue first",
    )
    parser.add_argument("--concurrency", type=int, help="override WORKER_CONCURRENCY (8)")
    parser.add_argument("--claim-batch", type=int, help="override WORKER_CLAIM_BATCH (32)")
    parser.add_argument(
        "--reuse", action="store_true", help="use the database as given, do not create/drop"
    )
    parser.add_argument(
        "--library",
        action="store_true",
        help="run the handlers through the longshore library (typed handlers, its Worker)",
    )
    parser.add_argument(
        "--compare-pgqueuer",
        action="store_true",
        help="postgres only: run PgQueuer (5 consumers x batch 10) in its own fresh database",
    )
    parser.add_argument("--json", action="store_true", help="print only one JSON object")
    parser.add_argument("--log-level", default="WARNING", help="stderr log level")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.backlog < 0 or args.latency_samples < 1:
        parser.error("--tasks and --latency-samples must be positive, --backlog >= 0")
    if args.compare_pgqueuer and args.backend != "postgres":
        parser.error("--compare-pgqueuer needs --backend postgres")
    config = BenchConfig(
        backend=args.backend,
        database_url=args.database_url,
        tasks=args.tasks,
        backlog=args.backlog,
        backlog_method=args.backlog_method,
        latency_samples=args.latency_samples,
        latency_warmup=args.latency_warmup,
        latency_gap_ms=args.latency_gap_ms,
        reuse=args.reuse,
        compare_pgqueuer=args.compare_pgqueuer,
        library=args.library,
        phase_order=args.phase_order,
        concurrency=args.concurrency,
        claim_batch=args.claim_batch,
    )
    return config, bool(args.json), str(args.log_level).upper()


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"Longshore {result['backend']} ({result['handlers']} handlers): {result['tasks']} tasks, "
        f"backlog {result['backlog']}, "
        f"concurrency {result['concurrency']}, claim batch {result['claim_batch']}",
        f"  throughput  {result['throughput_per_s']:>10.1f} tasks/s "
        f"(drained in {result['drain_seconds']:.2f} s; enqueue {result['enqueue_per_s']:.0f}/s)",
        f"  latency     p50 {result['latency_p50_ms']:.2f} ms  p90 {result['latency_p90_ms']:.2f}"
        f" ms  p99 {result['latency_p99_ms']:.2f} ms  max {result['latency_max_ms']:.2f} ms "
        f"({result['latency_samples']} samples)",
    ]
    for key, check in result.get("targets", {}).items():
        verdict = "met" if check["met"] else "MISSED"
        lines.append(f"  target {key} {check['target']}: {check['value']} -> {verdict}")
    pgq = result.get("pgqueuer")
    if isinstance(pgq, dict):
        lines += [
            f"PgQueuer {pgq['version']}: {pgq['consumers']} consumers x batch {pgq['batch_size']}",
            f"  throughput  {pgq['throughput_per_s']:>10.1f} tasks/s "
            f"(drained in {pgq['drain_seconds']:.2f} s)",
            f"  latency     p50 {pgq['latency_p50_ms']:.2f} ms  p90 {pgq['latency_p90_ms']:.2f} "
            f"ms  p99 {pgq['latency_p99_ms']:.2f} ms  max {pgq['latency_max_ms']:.2f} ms",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    config, as_json, log_level = parse_args(argv)
    configure_logging(log_level)
    try:
        result = asyncio.run(run(config))
    except BenchError as exc:
        print(f"bench.queue: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(result))
    else:
        print(summary(result))
    return 0


if __name__ == "__main__":
    # Run the copy imported as ``bench.queue`` (not this ``__main__`` one) so that
    # bench._pgqueuer shares its classes, BenchError included.
    from bench.queue import main as _main

    sys.exit(_main())
