"""``longshore maintenance``: seed 004's maintenance operations, over the admin API (its
roles, approval and audit log)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from service.cli.api import ApiError, api_client, connection_callback
from service.cli.common import JsonFlag, command_group, print_json, print_table
from service.units import parse_duration

app = command_group(
    "Queue maintenance: clean up, force-unlock workers' tasks, sweep stale workers (over the "
    "admin API; --url, --token, --cert, --key and --ca go before the command).",
    callback=connection_callback,
)

CLEANUPS = ("expired-keys", "empty-queues")


@app.command("cleanup")
def cleanup(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Run only this cleanup (repeatable): expired-keys (done tasks whose key "
            "retention is over) or empty-queues (queues with no task and no setting).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete done tasks whose key retention is over and forget empty queues."""
    body: dict[str, Any] | None = None
    if only:
        unknown = [name for name in only if name not in CLEANUPS]
        if unknown:
            raise ApiError(f"--only {unknown[0]!r}: must be one of {', '.join(CLEANUPS)}")
        body = {"tasks": list(dict.fromkeys(only))}
    with api_client(ctx) as client:
        result = client.post("/maintenance/cleanup", body)
    if as_json:
        print_json(result)
        return
    removed = result.get("queuesRemoved") or []
    typer.echo(
        f"cleanup ({', '.join(result.get('tasks', []))}): "
        f"{result.get('expiredKeysDeleted', 0)} expired key(s) deleted, "
        f"{len(removed)} empty queue(s) removed" + (f": {', '.join(removed)}" if removed else "")
    )


@app.command("force-unlock")
def force_unlock(
    ctx: typer.Context,
    worker_ids: Annotated[list[str], typer.Argument(help="Workers whose tasks to release.")],
    as_json: JsonFlag = False,
) -> None:
    """Give the tasks leased by these workers back to the queue (for workers known to be
    gone whose leases have not expired yet)."""
    with api_client(ctx) as client:
        result = client.post("/maintenance/force-unlock", {"workerIds": worker_ids})
    if as_json:
        print_json(result)
        return
    typer.echo(f"released {result.get('released', 0)} task(s)")
    for worker, ids in (result.get("byWorker") or {}).items():
        typer.echo(f"  {worker}: {', '.join(ids)}")


@app.command("sweep-stale-workers")
def sweep_stale_workers(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be swept.")
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Stale after this long without a heartbeat, e.g. 90s or 5m "
            "(default: the service's WORKER_STALE_WORKER_SECONDS rule)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove workers whose heartbeat is stale and make their running tasks waiting again."""
    body: dict[str, Any] = {"dryRun": dry_run}
    if older_than is not None:
        try:
            seconds = parse_duration(older_than)
        except ValueError as exc:
            raise ApiError(f"--older-than: {exc}") from None
        body["olderThanSeconds"] = max(1, round(seconds))
    with api_client(ctx) as client:
        result = client.post("/maintenance/sweep-stale-workers", body)
    if as_json:
        print_json(result)
        return
    workers = result.get("workers") or []
    print_table(
        ["worker", "host", "pid", "running", "last heartbeat"],
        [
            [
                w.get("workerId"),
                w.get("hostname"),
                w.get("pid"),
                w.get("running"),
                w.get("heartbeatAt"),
            ]
            for w in workers
        ],
    )
    verb = "would sweep" if result.get("dryRun") else "swept"
    typer.echo(
        f"{verb} {len(workers)} worker(s) silent for over {result.get('olderThanSeconds')}s, "
        f"holding {result.get('tasks', 0)} task(s)"
    )
