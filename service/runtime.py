"""Wiring of the worker from settings: the handler registry and the worker options."""

from __future__ import annotations

from datetime import timedelta

from service.builtins import register_builtins
from service.settings import Settings
from service.worker import HandlerRegistry, WorkerOptions


def build_registry() -> HandlerRegistry:
    """Every handler this build of Longshore knows."""
    registry = HandlerRegistry()
    register_builtins(registry)
    return registry


def worker_options(
    settings: Settings, *, drain: bool = False, queues: list[str] | None = None
) -> WorkerOptions:
    return WorkerOptions(
        concurrency=settings.concurrency,
        lease=timedelta(seconds=settings.lease_seconds),
        heartbeat_interval=settings.effective_heartbeat_seconds,
        poll_interval=settings.poll_interval_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
        stale_after=timedelta(seconds=settings.effective_stale_worker_seconds),
        claim_batch=settings.claim_batch,
        key_retention=timedelta(seconds=settings.key_retention_seconds),
        queues=tuple(queues) if queues else None,
        drain=drain,
    )
