"""The same drain and latency measurements with PgQueuer, for comparison.

Imported only for ``--compare-pgqueuer``: PgQueuer is an optional dependency
(``pip install 'longshore[bench]'``). The setup follows PgQueuer's own drain benchmark
(``tools/benchmark.py --strategy drain``): 5 ``PgQueuer`` consumers, each on its own asyncpg
connection, dequeueing in batches of 10, default settings otherwise, in a fresh database
with PgQueuer's schema installed (``Queries.install``, as ``pgq install`` does).

Timing matches the Longshore measurement: the clock runs from starting the consumers until
every task has been handled and every consumer has shut down (status logs flushed);
latency is enqueue call -> entrypoint start, one job at a time with idle consumers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from importlib import metadata
from typing import Any

import asyncpg
from pgqueuer import AsyncpgDriver, PgQueuer, Queries  # type: ignore[import-not-found, unused-ignore]
from pgqueuer.models import Job  # type: ignore[import-not-found, unused-ignore]

from bench.queue import (
    ENQUEUE_CHUNK,
    BenchError,
    fresh_postgres_database,
    latency_summary,
)

logger = logging.getLogger("bench.pgqueuer")

NOOP = "bench_noop"
PROBE = "bench_probe"
BACKLOG = "bench_backlog"
CONSUMERS = 5
BATCH_SIZE = 10


class _Consumers:
    """``CONSUMERS`` PgQueuer instances with the noop and probe entrypoints."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connections: list[Any] = []
        self._instances: list[Any] = []
        self._runners: list[asyncio.Task[None]] = []
        self.handled = 0
        self.target = 0
        self.all_handled = asyncio.Event()
        self.samples_ms: list[float] = []
        self._arrived: asyncio.Future[None] | None = None

    async def start(self) -> None:
        for _ in range(CONSUMERS):
            connection = await asyncpg.connect(self._url)
            self._connections.append(connection)
            pgq = PgQueuer(AsyncpgDriver(connection))

            @pgq.entrypoint(NOOP)
            async def noop(job: Job) -> None:
                self.handled += 1
                if self.handled >= self.target:
                    self.all_handled.set()

            @pgq.entrypoint(PROBE)
            async def probe(job: Job) -> None:
                started = time.perf_counter()
                if job.payload:
                    self.samples_ms.append((started - float(job.payload.decode())) * 1000.0)
                if self._arrived is not None and not self._arrived.done():
                    self._arrived.set_result(None)

            self._instances.append(pgq)
        self._runners = [
            asyncio.create_task(pgq.run(batch_size=BATCH_SIZE), name=f"pgqueuer-{i}")
            for i, pgq in enumerate(self._instances)
        ]

    def expect(self) -> asyncio.Future[None]:
        self._arrived = asyncio.get_running_loop().create_future()
        return self._arrived

    def check_alive(self) -> None:
        for runner in self._runners:
            if runner.done():
                runner.result()
                raise BenchError("a PgQueuer consumer stopped early")

    async def stop(self) -> None:
        for pgq in self._instances:
            pgq.shutdown.set()
        await asyncio.gather(*self._runners)
        for connection in self._connections:
            await connection.close()


async def _enqueue_chunks(
    queries: Any, count: int, entrypoint: str, execute_after: timedelta | None = None
) -> float:
    started = time.perf_counter()
    done = 0
    while done < count:
        size = min(ENQUEUE_CHUNK, count - done)
        await queries.enqueue(
            [entrypoint] * size,
            [None] * size,
            [0] * size,
            [execute_after] * size if execute_after else None,
        )
        done += size
    return time.perf_counter() - started


async def _latency(
    url: str, queries: Any, *, samples: int, warmup: int, gap: float
) -> dict[str, Any]:
    """Idle consumers; one probe at a time, enqueue call -> entrypoint start."""
    consumers = _Consumers(url)
    await consumers.start()
    await asyncio.sleep(0.5)
    for index in range(warmup + samples):
        if index == warmup:
            consumers.samples_ms.clear()
        arrived = consumers.expect()
        sent = time.perf_counter()
        await queries.enqueue(PROBE, repr(sent).encode())
        try:
            await asyncio.wait_for(arrived, timeout=10)
        except TimeoutError:
            consumers.check_alive()
            raise BenchError(f"PgQueuer probe {index} did not start in 10 s") from None
        await asyncio.sleep(gap)
    await consumers.stop()
    if len(consumers.samples_ms) != samples:
        raise BenchError(f"PgQueuer: {len(consumers.samples_ms)} latency samples")
    return latency_summary(consumers.samples_ms)


async def _throughput(url: str, queries: Any, tasks: int) -> dict[str, Any]:
    """Drain ``tasks`` pre-enqueued noop jobs; consumers start -> all stopped."""
    seconds = await _enqueue_chunks(queries, tasks, NOOP)
    consumers = _Consumers(url)
    consumers.target = tasks
    started = time.perf_counter()
    await consumers.start()
    while not consumers.all_handled.is_set():
        consumers.check_alive()
        try:
            await asyncio.wait_for(consumers.all_handled.wait(), timeout=1)
        except TimeoutError:
            continue
    handled = time.perf_counter()
    await consumers.stop()
    finished = time.perf_counter()
    left = [
        row
        for row in await queries.queue_size()
        if row.entrypoint == NOOP and row.status in ("queued", "picked")
    ]
    if left or consumers.handled != tasks:
        raise BenchError(f"PgQueuer handled {consumers.handled}/{tasks}; left {left}")
    return {
        "enqueue_per_s": round(tasks / seconds, 1),
        "throughput_per_s": round(tasks / (finished - started), 1),
        "drain_seconds": round(finished - started, 3),
        "handlers_done_seconds": round(handled - started, 3),
    }


async def run_pgqueuer(
    server_url: str,
    *,
    tasks: int,
    backlog: int,
    latency_samples: int,
    latency_warmup: int,
    latency_gap: float,
    phase_order: str = "throughput-first",
) -> dict[str, Any]:
    """PgQueuer's drain throughput and wake-up latency in a fresh database."""
    result: dict[str, Any] = {
        "version": metadata.version("pgqueuer"),
        "consumers": CONSUMERS,
        "batch_size": BATCH_SIZE,
        "tasks": tasks,
        "backlog": backlog,
    }
    async with fresh_postgres_database(server_url, prefix="bench_pgq") as url:
        admin = await asyncpg.connect(url)
        try:
            queries = Queries(AsyncpgDriver(admin))
            await queries.install()
            if backlog:
                seconds = await _enqueue_chunks(
                    queries, backlog, BACKLOG, execute_after=timedelta(days=365)
                )
                result["backlog_load_seconds"] = round(seconds, 2)
            if phase_order == "latency-first":
                latency = await _latency(
                    url, queries, samples=latency_samples, warmup=latency_warmup, gap=latency_gap
                )
                throughput = await _throughput(url, queries, tasks)
            else:
                throughput = await _throughput(url, queries, tasks)
                latency = await _latency(
                    url, queries, samples=latency_samples, warmup=latency_warmup, gap=latency_gap
                )
        finally:
            await admin.close()
    result.update(throughput)
    result.update(latency)
    result["phase_order"] = phase_order
    return result
