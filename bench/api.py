"""Admin API benchmark: ``GET /overview`` latency under a backlog, ``GET /events`` fan-out.

    python -m bench.api [--database-url URL] [--queued 100000] [--dead 10000]
                        [--requests 300] [--clients 200] [--burst 1000]
                        [--skip-overview] [--skip-fanout] [--json]

The service is built as ``longshore serve`` builds it: ``open_runtime`` (role ``worker``:
no scheduler fires and no worker claims) on a fresh PostgreSQL database
``longshore_bench_api_<random>`` (created on the server of ``--database-url``, dropped
afterwards) and a temporary data directory, and the admin app served by
:func:`service.api_server.start_admin_api` (uvicorn in this process, on 127.0.0.1 with an
ephemeral port, bearer token). What it measures (targets from the issue, on the reference
machine: 2 cores, PostgreSQL local):

- **overview** (``overview_p99_ms`` <= 50): ``--queued`` ready ``builtin.noop`` tasks
  spread over ``--queues`` queues and ``--dead`` dead-lettered tasks (enqueued in
  another queue, claimed and failed without retry) are loaded with ``enqueue_many`` in
  chunks, then ``VACUUM (ANALYZE) tasks`` and a checkpoint. ``--warmup`` (20) requests,
  then ``--requests`` (300) sequential ``GET /admin/v1/overview`` with an
  ``httpx.AsyncClient`` over the real socket: the time from sending the request to having
  read the whole response; p50, p99, max and mean. The body is checked against the load.
- **fan-out** (every event delivered to ``--clients`` (200) clients;
  ``fanout_p99_ms`` <= 250): a separate process (``--fanout-client-process``, so that this
  process only serves) opens ``--clients`` connections to ``GET /admin/v1/events`` with
  ``Last-Event-ID`` = the event store's last id, and reports ready once every connection
  has received its connect-time snapshots and first heartbeat. This process then appends
  ``--burst`` (1,000) run events directly to the runtime's event store, as fast as it can
  (``append_many`` in chunks of ``--append-chunk``), each carrying ``sentNs`` =
  ``time.time_ns()`` taken just before its chunk is appended. The client process
  timestamps every HTTP chunk as it is read and, for each (client, event) pair, records
  receipt minus ``sentNs`` (same machine, same clock): p50, p99, max, mean, ``delivered``
  against ``expected`` (clients x burst), duplicates and order. ``--fanout-event run``
  (default) appends ``RunStarted`` events, which every dashboard stream receives (and
  which make each stream re-send its ``overview`` / ``job_events`` snapshots, at most once a
  second); ``output`` appends ``RunOutputEmitted`` events of one run that the clients
  follow (``?follow=``), which trigger no snapshot. The client uses a small HTTP/1.1 reader
  on asyncio streams rather than httpx, so that its own parsing (200,000 messages) stays
  cheap next to the server's work; its CPU time is reported (``client_cpu_seconds``).

The backlog stays in place during the fan-out (the connect-time snapshots and the 5 s
``overview`` refresh of 200 streams run against it). ``load_average_start`` /
``load_average_end`` (1, 5, 15 min) are recorded: the machine may be shared. With
``--json`` only one JSON object goes to stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from fastapi import FastAPI

from admin.config import AdminConfig
from admin.services import AdminServices
from admin.streams import end_event_streams
from bench.queue import fresh_postgres_database, percentile
from service.api_server import AdminApi, AdminPlan, start_admin_api
from service.lifecycle import Runtime, open_runtime
from service.logs import configure_logging
from service.settings import load_settings
from store.events import EventType, NewEvent
from store.events.audit import AuditLog
from store.queue.models import Failure, NewTask
from store.queue.protocol import TaskQueue

logger = logging.getLogger("bench.api")

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:55432/postgres"
NOOP_HANDLER = "builtin.noop"
DEAD_QUEUE = "bench-dead"
ENQUEUE_CHUNK = 5_000
CLAIM_CHUNK = 1_000
RUN_ID = "bench-run"
JOB = "bench"
TOKEN_NAME = "bench"
REPO_ROOT = Path(__file__).resolve().parent.parent
"""Where ``python -m bench.api`` runs the client process from."""

SENT_NS = re.compile(rb'"sentNs":\s*(\d+)')
"""The burst events' send stamp, as their JSON ``data`` carries it."""

TARGETS: dict[str, tuple[str, float]] = {
    "overview_p99_ms": ("<=", 50.0),
    "fanout_p99_ms": ("<=", 250.0),
}


class BenchError(Exception):
    """The benchmark cannot run or a check failed."""


# --- statistics ------------------------------------------------------------------------------


def summary_ms(prefix: str, samples_ms: Sequence[float]) -> dict[str, Any]:
    if not samples_ms:
        return {f"{prefix}_samples": 0}
    return {
        f"{prefix}_samples": len(samples_ms),
        f"{prefix}_p50_ms": round(percentile(samples_ms, 50), 3),
        f"{prefix}_p90_ms": round(percentile(samples_ms, 90), 3),
        f"{prefix}_p99_ms": round(percentile(samples_ms, 99), 3),
        f"{prefix}_max_ms": round(max(samples_ms), 3),
        f"{prefix}_mean_ms": round(sum(samples_ms) / len(samples_ms), 3),
    }


def check_targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    checked: dict[str, dict[str, Any]] = {}
    for key, (op, bound) in TARGETS.items():
        value = result.get(key)
        if not isinstance(value, int | float):
            continue
        met = value >= bound if op == ">=" else value <= bound
        checked[key] = {"target": f"{op} {bound:g}", "value": value, "met": met}
    if "fanout_delivered" in result:
        delivered, expected = result["fanout_delivered"], result["fanout_expected"]
        checked["events_fanout_clients"] = {
            "target": f"every event to {result['fanout_clients']} clients ({expected} deliveries)",
            "value": delivered,
            "met": delivered == expected and result.get("fanout_duplicates", 0) == 0,
        }
    return checked


# --- loading -----------------------------------------------------------------------------------


async def enqueue_chunks(queue: TaskQueue, count: int, queues: Sequence[str]) -> None:
    """``count`` ready ``builtin.noop`` tasks, round-robin over ``queues``."""
    done = 0
    while done < count:
        size = min(ENQUEUE_CHUNK, count - done)
        batch = [
            NewTask(handler=NOOP_HANDLER, queue=queues[(done + i) % len(queues)], payload={"n": i})
            for i in range(size)
        ]
        await queue.enqueue_many(batch)
        done += size


async def make_dead(queue: TaskQueue, count: int) -> None:
    """``count`` dead-lettered tasks: enqueued in :data:`DEAD_QUEUE`, claimed and failed
    without retry, as a worker does after the last attempt."""
    await enqueue_chunks(queue, count, [DEAD_QUEUE])
    worker = f"bench-loader-{secrets.token_hex(3)}"
    failed = 0
    while failed < count:
        tasks = await queue.claim(
            worker,
            min(CLAIM_CHUNK, count - failed),
            lease=timedelta(minutes=10),
            queues=[DEAD_QUEUE],
        )
        if not tasks:
            raise BenchError(f"only {failed}/{count} tasks could be claimed to dead-letter")
        failures = [
            Failure(task_id=task.id, error="bench: failed on purpose", retry_at=None)
            for task in tasks
        ]
        failed += await queue.fail(worker, failures)


async def vacuum(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM (ANALYZE) tasks")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def load(runtime: Runtime, url: str, config: BenchConfig) -> dict[str, Any]:
    queue = runtime.stores.queue
    started = time.perf_counter()
    names = [f"bench-{i}" for i in range(config.queues)]
    await enqueue_chunks(queue, config.queued, names)
    queued_s = time.perf_counter() - started
    await make_dead(queue, config.dead)
    dead_s = time.perf_counter() - started - queued_s
    await vacuum(url)
    logger.info("loaded %d queued and %d dead tasks", config.queued, config.dead)
    return {
        "load_queued_seconds": round(queued_s, 2),
        "load_dead_seconds": round(dead_s, 2),
        "load_seconds": round(time.perf_counter() - started, 2),
    }


# --- the server ---------------------------------------------------------------------------------


def _listen() -> tuple[socket.socket, int]:
    """A listening socket as ``service.api_server`` binds one, on an ephemeral port. The
    protocol must be given as ``IPPROTO_TCP`` (as ``getaddrinfo`` gives it): asyncio sets
    ``TCP_NODELAY`` on accepted connections only then, and without it each keep-alive
    response waits ~40 ms for the client's delayed ACK (Nagle)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.setblocking(False)
    sock.set_inheritable(False)
    return sock, int(sock.getsockname()[1])


async def start_server(stack: AsyncExitStack, runtime: Runtime, token: str) -> AdminApi:
    """The admin API over ``runtime`` as ``serve`` runs it (``start_admin_api``), on an
    ephemeral loopback port; leaving ``stack`` ends the event streams and stops it."""
    services = AdminServices(
        queue=runtime.stores.queue,
        audit=AuditLog(runtime.events),
        events=runtime.events,
        jobs=runtime.stores.jobs,
        runs=runtime.stores.runs,
        runner=runtime.job_runner,
        artifacts=runtime.artifacts,
        schedules=runtime.manager,
    )
    sock, port = _listen()
    stack.callback(sock.close)
    plan = AdminPlan(
        host="127.0.0.1",
        port=port,
        tls=None,
        config=AdminConfig(tokens={TOKEN_NAME: token}),
        sock=sock,
    )
    api = await start_admin_api(stack, plan, services=services)
    # Runs before the server stops (callbacks run in reverse): open streams end first.
    app = api.server.config.app
    if isinstance(app, FastAPI):
        stack.callback(end_event_streams, app)
    return api


# --- overview -----------------------------------------------------------------------------------


async def measure_overview(api: AdminApi, token: str, config: BenchConfig) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    samples: list[float] = []
    body: dict[str, Any] = {}
    async with httpx.AsyncClient(
        base_url=api.url, headers=headers, trust_env=False, timeout=30
    ) as client:
        for index in range(config.warmup + config.requests):
            started = time.perf_counter()
            response = await client.get("/overview")
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status_code != 200:
                raise BenchError(f"GET /overview: {response.status_code} {response.text[:300]}")
            if index >= config.warmup:
                samples.append(elapsed)
            body = response.json()
    stats = body.get("stats", {})
    expected = {"queuedTasks": config.queued, "deadTasks": config.dead}
    for key, value in expected.items():
        if stats.get(key) != value:
            raise BenchError(f"GET /overview: stats.{key} = {stats.get(key)}, expected {value}")
    result = summary_ms("overview", samples)
    result["overview_requests"] = config.requests
    result["overview_warmup"] = config.warmup
    return result


# --- fan-out: the server side -----------------------------------------------------------------


def burst_event(kind: str, index: int) -> NewEvent:
    sent = time.time_ns()
    if kind == "output":
        return NewEvent.run(
            EventType.RUN_OUTPUT_EMITTED,
            job=JOB,
            run_id=RUN_ID,
            seq=index,
            offset=index * 64,
            bytes=64,
            text=f"bench output line {index:06d} " + "x" * 40,
            sentNs=sent,
        )
    return NewEvent.run(
        EventType.RUN_STARTED, job=JOB, run_id=RUN_ID, state="running", attempt=1, sentNs=sent
    )


async def _read_json_line(stream: asyncio.StreamReader, seconds: float, what: str) -> Any:
    try:
        line = await asyncio.wait_for(stream.readline(), seconds)
    except TimeoutError:
        raise BenchError(f"the fan-out client process: no {what} within {seconds:g} s") from None
    if not line:
        raise BenchError(f"the fan-out client process exited before {what}")
    return json.loads(line)


async def measure_fanout(
    runtime: Runtime, api: AdminApi, token: str, config: BenchConfig
) -> dict[str, Any]:
    events = runtime.events
    after = events.last_id
    parts = urlsplit(api.url)
    command = [
        sys.executable,
        "-m",
        "bench.api",
        "--fanout-client-process",
        "--url",
        f"{parts.scheme}://{parts.netloc}",
        "--token",
        token,
        "--clients",
        str(config.clients),
        "--expect",
        str(config.burst),
        "--after",
        str(after),
        "--fanout-event",
        config.fanout_event,
        "--timeout",
        str(config.fanout_timeout),
    ]
    child = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    assert child.stdout is not None
    try:
        ready = await _read_json_line(child.stdout, config.fanout_timeout, "ready line")
        if not ready.get("ready"):
            raise BenchError(f"the fan-out client process failed: {ready}")
        logger.info("%d clients connected in %.1f s", config.clients, ready["connect_seconds"])
        cpu = time.process_time()
        started_ns = time.time_ns()
        index = 0
        while index < config.burst:
            size = min(config.append_chunk, config.burst - index)
            if size == 1:
                await events.append(burst_event(config.fanout_event, index))
            else:
                await events.append_many(
                    [burst_event(config.fanout_event, index + i) for i in range(size)]
                )
            index += size
        appended_ns = time.time_ns()
        report = await _read_json_line(child.stdout, config.fanout_timeout + 30, "result")
        server_cpu = time.process_time() - cpu
        await asyncio.wait_for(child.wait(), 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        raise BenchError(f"the fan-out client process exited with {child.returncode}")
    last = report.pop("last_receipt_ns", None)
    result: dict[str, Any] = {
        "fanout_event": config.fanout_event,
        "fanout_burst": config.burst,
        "fanout_append_chunk": config.append_chunk,
        "fanout_connect_seconds": ready["connect_seconds"],
        "fanout_append_ms": round((appended_ns - started_ns) / 1e6, 1),
        "fanout_all_delivered_ms": (
            round((last - started_ns) / 1e6, 1) if isinstance(last, int) else None
        ),
        "fanout_server_cpu_seconds": round(server_cpu, 2),
    }
    result.update(report)
    span = result["fanout_all_delivered_ms"]
    if span:
        # What the server sustained: messages written to all streams per second.
        result["fanout_deliveries_per_s"] = round(result["fanout_delivered"] / span * 1000.0)
    if result["fanout_delivered"]:
        # The server's CPU per delivered (client, event) message, appends included.
        result["fanout_server_cpu_us_per_delivery"] = round(
            server_cpu * 1e6 / result["fanout_delivered"], 1
        )
    return result


# --- fan-out: the client process ----------------------------------------------------------------


class FanoutClient:
    """One SSE connection: a minimal HTTP/1.1 reader (chunked or close-delimited body)."""

    def __init__(self, number: int, expect: int, latencies_ns: list[int]) -> None:
        self.number = number
        self.expect = expect
        self.latencies_ns = latencies_ns
        self.received = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.last_id = -1
        self.seen: set[int] = set()
        self.last_receipt_ns = 0
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        self.error: str | None = None
        self._buffer = b""

    async def run(self, host: str, port: int, path: str, token: str, after: int) -> None:
        try:
            await self._run(host, port, path, token, after)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()
            self.done.set()

    async def _run(self, host: str, port: int, path: str, token: str, after: int) -> None:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        try:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n"
                f"Cache-Control: no-cache\r\nLast-Event-ID: {after}\r\n\r\n"
            )
            writer.write(request.encode("ascii"))
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                raise BenchError(f"client {self.number}: {status.decode(errors='replace').strip()}")
            chunked = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            while not self.done.is_set():
                if chunked:
                    size_line = await reader.readline()
                    if not size_line:
                        break
                    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    data = await reader.readexactly(size + 2)
                    self.feed(data[:-2], time.time_ns())
                else:
                    data = await reader.read(1 << 16)
                    if not data:
                        break
                    self.feed(data, time.time_ns())
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def feed(self, data: bytes, now_ns: int) -> None:
        self._buffer += data
        if b"\n\n" not in self._buffer:
            return
        *messages, self._buffer = self._buffer.split(b"\n\n")
        for message in messages:
            self.message(message, now_ns)

    def message(self, message: bytes, now_ns: int) -> None:
        event = ""
        event_id: int | None = None
        data: list[bytes] = []
        for line in message.split(b"\n"):
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                event = value.decode()
            elif field == b"id" and value.isdigit():
                event_id = int(value)
        if event == "heartbeat":
            self.ready.set()
            return
        if not data:
            return
        # A regular expression rather than json.loads: the client must stay cheap next
        # to the server (both share the machine), or its own backlog is what is measured.
        found = SENT_NS.search(b"\n".join(data))
        if found is None:
            return
        sent = int(found.group(1))
        if event_id is not None:
            if event_id in self.seen:
                self.duplicates += 1
                return
            self.seen.add(event_id)
            if event_id < self.last_id:
                self.out_of_order += 1
            self.last_id = event_id
        self.latencies_ns.append(now_ns - sent)
        self.received += 1
        self.last_receipt_ns = max(self.last_receipt_ns, now_ns)
        if self.received >= self.expect:
            self.done.set()


async def fanout_clients(args: argparse.Namespace) -> dict[str, Any]:
    """The client process: connect, say ready, collect, report (two JSON lines)."""
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = "/admin/v1/events"
    if args.fanout_event == "output":
        path += f"?follow={quote(RUN_ID)}"
    latencies: list[int] = []
    clients = [FanoutClient(n, args.expect, latencies) for n in range(args.clients)]
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(client.run(host, port, path, args.token, args.after))
        for client in clients
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(client.ready.wait() for client in clients)), args.fanout_timeout
        )
    errors = [client.error for client in clients if client.error]
    connected = sum(1 for client in clients if client.ready.is_set() and not client.error)
    ready = {
        "ready": connected == len(clients),
        "connected": connected,
        "connect_seconds": round(time.perf_counter() - started, 2),
        "errors": errors[:5],
    }
    print(json.dumps(ready), flush=True)
    if not ready["ready"]:
        for task in tasks:
            task.cancel()
        return ready
    cpu = time.process_time()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(client.done.wait() for client in clients)), args.fanout_timeout
        )
    cpu = time.process_time() - cpu
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    samples_ms = [value / 1e6 for value in latencies]
    expected = args.clients * args.expect
    result: dict[str, Any] = {
        "fanout_clients": args.clients,
        "fanout_expected": expected,
        "fanout_delivered": len(samples_ms),
        "fanout_missing": expected - len(samples_ms),
        "fanout_complete_clients": sum(1 for c in clients if c.received >= args.expect),
        "fanout_duplicates": sum(client.duplicates for client in clients),
        "fanout_out_of_order": sum(client.out_of_order for client in clients),
        "fanout_client_errors": [client.error for client in clients if client.error][:5],
        "client_cpu_seconds": round(cpu, 2),
        "last_receipt_ns": max((client.last_receipt_ns for client in clients), default=0),
    }
    result.update(summary_ms("fanout", samples_ms))
    print(json.dumps(result), flush=True)
    return result


# --- the run --------------------------------------------------------------------------------------


class BenchConfig(argparse.Namespace):
    database_url: str
    queued: int
    dead: int
    queues: int
    requests: int
    warmup: int
    clients: int
    burst: int
    append_chunk: int
    fanout_event: str
    fanout_timeout: float
    skip_overview: bool
    skip_fanout: bool


async def run(config: BenchConfig) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "api",
        "backend": "postgres",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        # The machine may be shared: the 1/5/15-minute load averages before and after.
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "queued": config.queued,
        "dead": config.dead,
        "queues": config.queues,
    }
    token = secrets.token_urlsafe(24)
    async with fresh_postgres_database(config.database_url, prefix="longshore_bench_api") as url:
        with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
            settings = load_settings({}, data_dir=Path(tmp) / "data", database_url=url)
            async with open_runtime(settings, role="worker") as runtime, AsyncExitStack() as stack:
                result.update(await load(runtime, url, config))
                api = await start_server(stack, runtime, token)
                if not config.skip_overview:
                    overview = await measure_overview(api, token, config)
                    logger.info("overview: %s", overview)
                    result.update(overview)
                if not config.skip_fanout:
                    fanout = await measure_fanout(runtime, api, token, config)
                    logger.info("fanout: %s", fanout)
                    result.update(fanout)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = check_targets(result)
    return result


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api",
        description="Admin API: GET /overview latency under a backlog, GET /events fan-out.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LONGSHORE_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL server (a fresh database is created on it and dropped afterwards)",
    )
    parser.add_argument("--queued", type=int, default=100_000, help="ready tasks in the backlog")
    parser.add_argument("--dead", type=int, default=10_000, help="dead-lettered tasks")
    parser.add_argument("--queues", type=int, default=4, help="queues the ready tasks spread over")
    parser.add_argument("--requests", type=int, default=300, help="GET /overview measured")
    parser.add_argument("--warmup", type=int, default=20, help="GET /overview not counted")
    parser.add_argument("--clients", type=int, default=200, help="SSE clients of GET /events")
    parser.add_argument("--burst", type=int, default=1_000, help="events appended in the burst")
    parser.add_argument(
        "--append-chunk", type=int, default=10, help="events per append_many call in the burst"
    )
    parser.add_argument(
        "--fanout-event",
        choices=["run", "output"],
        default="run",
        help="run: RunStarted events (every stream gets them); output: RunOutputEmitted "
        "events of one run the clients follow",
    )
    parser.add_argument(
        "--fanout-timeout",
        "--timeout",
        dest="fanout_timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the clients to connect, and then for every delivery",
    )
    parser.add_argument("--skip-overview", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--log-level", default="WARNING", help="stderr log level")
    # The client process (started by the fan-out phase).
    parser.add_argument("--fanout-client-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--after", type=int, default=0, help=argparse.SUPPRESS)
    config = parser.parse_args(argv, namespace=BenchConfig())
    if min(config.queued, config.dead, config.requests, config.warmup, config.burst) < 0:
        parser.error("sizes must not be negative")
    if min(config.queues, config.clients, config.append_chunk) < 1:
        parser.error("--queues, --clients and --append-chunk must be at least 1")
    if not config.database_url.startswith(("postgresql:", "postgres:")):
        parser.error("--database-url must name a PostgreSQL server")
    return config


def summary(result: dict[str, Any]) -> str:
    lines = [f"{key:28} {value}" for key, value in result.items() if key != "targets"]
    for key, check in result.get("targets", {}).items():
        verdict = "met" if check["met"] else "MISSED"
        lines.append(f"target {key} {check['target']}: {check['value']} -> {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    configure_logging(str(config.log_level).upper())
    if getattr(config, "fanout_client_process", False):
        report = asyncio.run(fanout_clients(config))
        return 0 if report.get("ready", True) else 1
    try:
        result = asyncio.run(run(config))
    except BenchError as exc:
        print(f"bench.api: {exc}", file=sys.stderr)
        return 2
    if config.json:
        print(json.dumps(result))
    else:
        print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
