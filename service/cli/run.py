"""``longshore serve``, ``longshore worker`` and ``longshore migrate``."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.common import DatabaseUrl, run_async, settings_for

if TYPE_CHECKING:
    from jobrunner.runner import JobRunner
    from service.api_server import AdminPlan
    from service.lifecycle import Role
    from service.settings import Settings

# The runtime (the admin API, the scheduler, the job runner and its engine) is imported by
# ``serve``, ``worker`` and ``migrate`` when they run: the other commands start without it.

logger = logging.getLogger(__name__)

Concurrency = Annotated[
    int | None,
    typer.Option("--concurrency", "-c", min=1, max=1024, help="Handlers run at once."),
]
Queues = Annotated[
    list[str] | None,
    typer.Option("--queue", "-q", help="Only claim from this queue (repeatable)."),
]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("migrate")(migrate)


ReadOnlyFlag = Annotated[
    bool,
    typer.Option(
        "--read-only",
        help="Turn every mutation off, in the console and the API (WORKER_ADMIN_READ_ONLY).",
    ),
]


def serve(
    database_url: DatabaseUrl = None,
    concurrency: Concurrency = None,
    read_only: ReadOnlyFlag = False,
) -> None:
    """Run Longshore in one process: the admin API, the worker and the scheduler over the
    embedded store (or PostgreSQL), writing run and schedule events to the event store.

    The admin API listens on WORKER_ADMIN_HTTP_ADDR: with WORKER_ADMIN_TLS_CERT/KEY/CA over
    mTLS, else on loopback only with a bearer token (WORKER_ADMIN_TOKEN, or one generated at
    first start into the data dir).

    Stops cleanly on Ctrl-C or SIGTERM: no new claims, running tasks finish within the
    grace period, unfinished ones are handed back; then the admin API and the scheduler stop
    and the event store and the database are closed.
    """
    from service.api_listener import prepare_admin_api
    from service.api_token import PASSWORD_FILE
    from service.backends import resolve_target
    from service.datadir import secure_data_dir

    settings = settings_for(
        database_url,
        long_running=True,
        concurrency=concurrency,
        admin_read_only=True if read_only else None,
    )
    secure_data_dir(settings.data_dir, (settings.event_dir, settings.job_work_dir))
    target, _ = resolve_target(settings)
    plan = prepare_admin_api(settings)
    try:
        if plan.new_token is not None:
            typer.echo(
                f"longshore: generated an admin API token, stored in {plan.token_source} "
                f"(mode 0600) and shown only this once:\n  {plan.new_token}",
                err=True,
            )
        if plan.new_password is not None:
            typer.echo(
                "longshore: generated the console password of user 'admin', stored in "
                f"{settings.data_dir / PASSWORD_FILE} (mode 0600) and shown only this once:\n"
                f"  {plan.new_password}",
                err=True,
            )
        typer.echo(
            f"longshore: serving with store {target.backend} at {target.location}, "
            f"{settings.concurrency} worker slots, scheduler on (leader-elected), "
            f"events in {settings.event_dir}; Ctrl-C to stop\n"
            f"longshore: {plan.describe()}",
            err=True,
        )
        run_async(lambda: _run_worker(settings, role="serve", drain=False, queues=None, admin=plan))
    finally:
        plan.close()


def worker(
    database_url: DatabaseUrl = None,
    concurrency: Concurrency = None,
    queue: Queues = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="Exit when nothing is ready or running.")
    ] = False,
) -> None:
    """Run a worker only (scale-out: many workers can share one PostgreSQL). It never fires
    schedules (longshore serve does) and leaves event retention to serve."""
    from service.datadir import secure_data_dir

    settings = settings_for(database_url, long_running=True, concurrency=concurrency)
    secure_data_dir(settings.data_dir, (settings.event_dir, settings.job_work_dir))
    processed = run_async(lambda: _run_worker(settings, role="worker", drain=drain, queues=queue))
    if drain:
        typer.echo(f"drained: {processed} tasks processed", err=True)


def migrate(database_url: DatabaseUrl = None) -> None:
    """Bring the database schema up to date (idempotent)."""
    from service.backends import open_database_and_migrate, resolve_target

    settings = settings_for(database_url)
    target, _ = resolve_target(settings)

    applied = run_async(lambda: open_database_and_migrate(settings))
    if applied:
        typer.echo(f"{target.backend} at {target.location}: applied migrations {applied}")
    else:
        typer.echo(f"{target.backend} at {target.location}: schema already up to date")


async def _run_worker(
    settings: Settings,
    *,
    role: Role,
    drain: bool,
    queues: list[str] | None,
    admin: AdminPlan | None = None,
) -> int:
    import asyncio

    from service.lifecycle import open_runtime
    from service.runtime import build_registry, settle_heap, worker_options
    from service.signals import stop_on_signals
    from service.worker import Worker

    _warn_ignored()
    stop = asyncio.Event()
    with stop_on_signals(stop):
        # Everything is closed in reverse order of opening once the worker has stopped:
        # admin API, scheduler, factory sync, Docker client, event store, database.
        async with open_runtime(settings, role=role, admin=admin) as runtime:
            await _cleanup_orphans(runtime.job_runner)
            await runtime.leftovers.remove()  # the runs of a crashed process are ended now
            settle_heap()  # this process now runs until it is stopped
            options = worker_options(settings, drain=drain, queues=queues)
            registry = build_registry(runtime.job_runner, deliverer=runtime.deliverer)
            runner = Worker(
                runtime.stores.queue,
                registry,
                options,
                observer=runtime.notification_observer(),
            )
            await runner.run(stop)
            return runner.processed


def _warn_ignored() -> None:
    from service.settings import ignored_variables

    for name in ignored_variables(os.environ):
        logger.warning(
            f"{name} is set but has no effect in Longshore (see docs/configuration.md)",
            extra={"variable": name},
        )


async def _cleanup_orphans(job_runner: JobRunner) -> None:
    """Remove containers of runs no live worker owns. A Docker engine that cannot be reached
    does not stop the worker: built-in handlers still work and job runs wait for the engine
    (``WORKER_INFRA_RETRY_SECONDS``) until it is back."""
    from jobrunner.errors import EngineUnavailable

    try:
        await job_runner.cleanup_orphans()
    except EngineUnavailable as exc:
        logger.warning(
            "Docker engine unreachable: job runs wait for it (WORKER_INFRA_RETRY_SECONDS); "
            "other handlers work",
            extra={"error": str(exc)},
        )
