"""The queue benchmark's ``--library`` harness: the same phases through the public library.

A :class:`longshore.Client` on the benchmark's database, typed handlers registered on a
:class:`longshore.Registry` (the no-op takes a pydantic payload and the context, as a
library user's handler would) and :class:`longshore.Worker` with the settings the built-in
run uses (concurrency, claim batch, lease, polling, grace).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

import longshore
from bench.queue import PROBE_HANDLER, Harness, LatencyProbe
from service.settings import Settings

LIBRARY_NOOP = "bench.library_noop"


class Noop(BaseModel):
    """The no-op's payload: validated on every run, as any typed handler's."""

    n: int = 0


def library_registry(probe: LatencyProbe) -> longshore.Registry:
    registry = longshore.Registry()

    @registry.handler(LIBRARY_NOOP)
    async def noop(payload: Noop, ctx: longshore.Context) -> None:
        return None

    @registry.handler(PROBE_HANDLER)
    async def record_latency(payload: dict[str, Any]) -> None:
        probe.record(payload)

    return registry


@asynccontextmanager
async def library_harness(
    settings: Settings, url: str, probe: LatencyProbe
) -> AsyncIterator[Harness]:
    """The benchmark's phases over the library (see the module docstring)."""
    client = longshore.Client(
        url,
        key_retention=timedelta(seconds=settings.key_retention_seconds),
        pool_size=max(4, settings.concurrency // 4),
    )
    async with client:
        worker = longshore.Worker(
            client,
            library_registry(probe),
            concurrency=settings.concurrency,
            claim_batch=settings.claim_batch,
            lease=timedelta(seconds=settings.lease_seconds),
            poll_interval=settings.poll_interval_seconds,
            shutdown_grace=settings.shutdown_grace_seconds,
        )
        yield Harness(queue=client.queue, noop_handler=LIBRARY_NOOP, running=worker.running)
