"""A worker's liveness: staying listed, renewing its leases, and reclaiming what dead
workers left behind — without writing off live workers after a store outage.

- The **heartbeat** renews every lease the worker holds and refreshes its registration at
  every interval. Registering is an upsert, so a worker whose row was swept while the
  store was out of reach (its heartbeat looked stale to another worker) is listed again
  with its next heartbeat: a swept worker treats that as a signal, not a fact.
- **Maintenance** returns expired leases and stale workers' tasks to the queue and purges
  old completed tasks. After an outage every lease and heartbeat looks stale, so it waits
  until this worker's own heartbeats have gone through for two intervals since the store
  came back: every live worker has had the chance to renew before anyone is written off.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from store.errors import StoreUnavailable
from store.queue.models import WorkerInfo
from store.queue.protocol import TaskQueue

logger = logging.getLogger(__name__)


class Liveness:
    """The registration, heartbeat and maintenance of one worker."""

    def __init__(
        self,
        queue: TaskQueue,
        info: WorkerInfo,
        *,
        lease: timedelta,
        heartbeat_interval: float,
        stale_after: timedelta,
        key_retention: timedelta,
    ) -> None:
        self._queue = queue
        self._info = info
        self._lease = lease
        self._heartbeat_interval = heartbeat_interval
        self._stale_after = stale_after
        self._key_retention = key_retention
        self._store_back_at: float | None = None
        """Loop time since when the store has answered without a failure in between
        (``None`` until it has, and again after a failure)."""

    async def register(self) -> None:
        """Record (or refresh) the worker's registration."""
        await self._queue.register_worker(self._info)
        self._answered()

    async def heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self._queue.heartbeat(self._info.worker_id, self._lease)
                await self.register()
            except StoreUnavailable as exc:
                self._store_back_at = None
                logger.warning("heartbeat failed", extra={"error": str(exc)})

    async def maintenance_loop(self) -> None:
        interval = max(min(self._lease.total_seconds() / 2, 30.0), 0.5)
        while True:
            if self.fair_to_sweep():
                await self._maintain()
            await asyncio.sleep(interval)

    def fair_to_sweep(self) -> bool:
        """Whether expired leases and stale workers may be reclaimed now (see the module
        docstring)."""
        back_at = self._store_back_at
        if back_at is None:
            return False
        waited = asyncio.get_running_loop().time() - back_at
        return waited >= 2 * self._heartbeat_interval

    async def _maintain(self) -> None:
        queue = self._queue
        try:
            reclaimed = await queue.reclaim_expired()
            stale = await queue.sweep_stale_workers(self._stale_after)
            await queue.purge_done(datetime.now(UTC) - self._key_retention)
        except StoreUnavailable as exc:
            self._store_back_at = None
            logger.warning("queue maintenance failed", extra={"error": str(exc)})
            return
        if reclaimed or stale:
            logger.info(
                "returned abandoned tasks to the queue",
                extra={"expired_leases": reclaimed, "stale_workers": stale},
            )

    def _answered(self) -> None:
        if self._store_back_at is None:
            self._store_back_at = asyncio.get_running_loop().time()
