"""``longshore dlq``: the dead-letter queue."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from service.cli.api import ConnectionFlags, connect
from service.cli.common import (
    DatabaseUrl,
    JsonFlag,
    command_group,
    iso,
    print_json,
    print_table,
    queue_session,
    run_async,
    settings_for,
    short,
    task_json,
)
from service.cli.terminal import inline
from service.units import parse_duration
from store.errors import InvalidTask, TaskNotFound
from store.queue.models import DeadFilter, DeadStats, Page, Task, TaskState

app = command_group(
    "Inspect, replay and purge dead-lettered tasks (on the database; list, show and "
    "replay also over the admin API with --api).",
)

Queue = Annotated[str | None, typer.Option(help="Only this queue.")]
Handler = Annotated[str | None, typer.Option(help="Only this handler.")]
Search = Annotated[str | None, typer.Option(help="Substring of handler/key/error/payload.")]
ViaApi = Annotated[
    bool,
    typer.Option(
        "--api",
        help="Go through the admin API (its roles, approval and audit log; connection from "
        "WORKER_ADMIN_URL/_CLIENT_CERT/_CLIENT_KEY or the local token) instead of the database.",
    ),
]


DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Only count, by queue, the tasks it would take; change nothing."
    ),
]


def _replay_preview(
    ids: list[int] | None,
    filters: DeadFilter,
    limit: int,
    database_url: str | None,
    via_api: bool,
) -> dict[str, int]:
    """How many dead tasks, by queue, the replay would take."""
    if via_api:
        with connect(ConnectionFlags()) as client:
            if ids:
                body = client.post(
                    "/dlq/replay/ids", {"ids": [str(i) for i in ids], "dryRun": True}
                )
            else:
                wanted = {
                    "queue": filters.queue,
                    "handler": filters.handler,
                    "query": filters.search,
                }
                body = client.post(
                    "/dlq/replay",
                    {
                        "limit": limit,
                        "dryRun": True,
                        **{k: v for k, v in wanted.items() if v is not None},
                    },
                )
        return {str(k): int(v) for k, v in (body.get("byQueue") or {}).items()}
    settings = settings_for(database_url)

    async def go() -> dict[str, int]:
        async with queue_session(settings) as task_queue:
            if not ids:
                return await task_queue.dead_preview(filters, limit=limit)
            counts: dict[str, int] = {}
            for task_id in dict.fromkeys(ids):
                task = await task_queue.get_task(task_id)
                if task is not None and task.state is TaskState.DEAD:
                    counts[task.queue] = counts.get(task.queue, 0) + 1
            return dict(sorted(counts.items()))

    return run_async(go)


def _show_preview(action: str, by_queue: dict[str, int], as_json: bool) -> None:
    total = sum(by_queue.values())
    if as_json:
        print_json({"dryRun": True, "action": action, "total": total, "byQueue": by_queue})
        return
    parts = ", ".join(f"{count} of queue {inline(name)}" for name, count in by_queue.items())
    verb = "replays" if action == "replay" else "purges"
    typer.echo(f"dry run: this {verb} {total} task(s)" + (f" ({parts})" if parts else ""))


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@app.command("list")
def list_dead(
    queue: Queue = None,
    handler: Handler = None,
    search: Search = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    database_url: DatabaseUrl = None,
    via_api: ViaApi = False,
    as_json: JsonFlag = False,
) -> None:
    """List dead tasks, most recent first."""
    if via_api:
        with connect(ConnectionFlags()) as client:
            body = client.get(
                "/dlq", queue=queue, handler=handler, query=search, limit=limit, offset=offset
            )
        if as_json:
            print_json(body)
            return
        entries = body.get("entries", [])
        print_table(
            ["id", "queue", "handler", "attempts", "dead at", "last error"],
            [
                [
                    e.get("id"),
                    e.get("queue"),
                    e.get("handler"),
                    e.get("attempts"),
                    e.get("deadAt"),
                    short(e.get("lastError")),
                ]
                for e in entries
            ],
        )
        typer.echo(f"{len(entries)} of {body.get('total', len(entries))}")
        return
    settings = settings_for(database_url)

    async def go() -> Page[Task]:
        async with queue_session(settings) as task_queue:
            return await task_queue.list_dead(
                DeadFilter(queue=queue, handler=handler, search=search),
                limit=limit,
                offset=offset,
            )

    page = run_async(go)
    if as_json:
        print_json({"entries": [task_json(t) for t in page.items], "total": page.total})
        return
    print_table(
        ["id", "queue", "handler", "attempts", "dead at", "last error"],
        [
            [t.id, t.queue, t.handler, t.attempts, iso(t.dead_at), short(t.last_error)]
            for t in page.items
        ],
    )
    typer.echo(f"{len(page.items)} of {page.total}")


@app.command("show")
def show(
    task_id: Annotated[int, typer.Argument()],
    database_url: DatabaseUrl = None,
    via_api: ViaApi = False,
    as_json: JsonFlag = False,
) -> None:
    """Show one dead task with its error and payload."""
    if via_api:
        with connect(ConnectionFlags()) as client:
            entry = client.get(f"/dlq/{task_id}").get("entry", {})
        if as_json:
            print_json(entry)
            return
        _print_fields(entry)
        return
    settings = settings_for(database_url)

    async def go() -> Task | None:
        async with queue_session(settings) as task_queue:
            return await task_queue.get_task(task_id)

    task = run_async(go)
    if task is None or task.state is not TaskState.DEAD:
        raise TaskNotFound(f"no dead task with id {task_id}")
    data = task_json(task)
    if as_json:
        print_json(data)
        return
    _print_fields(data)


def _print_fields(fields: dict[str, Any]) -> None:
    """A dead task's fields, one per line; its error and payload are a job's text, shown
    with terminal controls escaped."""
    for name, value in fields.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        typer.echo(f"{name:>15}: {'' if value is None else inline(shown)}")


@app.command("replay")
def replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Task ids to replay.")] = None,
    all_matching: Annotated[
        bool, typer.Option("--all", help="Replay dead tasks matching the filters instead.")
    ] = False,
    queue: Queue = None,
    handler: Handler = None,
    search: Search = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Cap for --all.")] = 100,
    dry_run: DryRun = False,
    database_url: DatabaseUrl = None,
    via_api: ViaApi = False,
    as_json: JsonFlag = False,
) -> None:
    """Make dead tasks ready again with their attempts reset (by ids, or --all with filters)."""
    if bool(ids) == all_matching:
        raise InvalidTask("give task ids or --all (with optional filters), not both or neither")
    if dry_run:
        matching = DeadFilter(queue=queue, handler=handler, search=search)
        _show_preview(
            "replay", _replay_preview(ids, matching, limit, database_url, via_api), as_json
        )
        return
    if via_api:
        with connect(ConnectionFlags()) as client:
            if ids:
                body = client.post("/dlq/replay/ids", {"ids": [str(i) for i in ids]})
            else:
                filters = {"queue": queue, "handler": handler, "query": search}
                body = client.post(
                    "/dlq/replay",
                    {"limit": limit, **{k: v for k, v in filters.items() if v is not None}},
                )
        replayed = [int(i) for i in body.get("ids", [])]
    else:
        replayed = _replay_in_store(ids, queue, handler, search, limit, database_url)
    if as_json:
        print_json({"replayed": replayed})
    else:
        typer.echo(f"replayed {len(replayed)} task(s)" + (f": {replayed}" if replayed else ""))
    if ids and len(replayed) < len(ids):
        missing = sorted(set(ids) - set(replayed))
        typer.echo(f"not dead (ignored): {missing}", err=True)
        raise typer.Exit(1)


def _replay_in_store(
    ids: list[int] | None,
    queue: str | None,
    handler: str | None,
    search: str | None,
    limit: int,
    database_url: str | None,
) -> list[int]:
    settings = settings_for(database_url)
    actor = _actor()

    async def go() -> list[int]:
        async with queue_session(settings) as task_queue:
            if ids:
                return await task_queue.replay_dead(ids, actor=actor)
            return await task_queue.replay_dead_matching(
                DeadFilter(queue=queue, handler=handler, search=search), limit=limit, actor=actor
            )

    return run_async(go)


@app.command("delete")
def delete(
    ids: Annotated[list[int], typer.Argument(help="Dead task ids to delete.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Delete dead tasks for good."""
    settings = settings_for(database_url)

    async def go() -> int:
        async with queue_session(settings) as task_queue:
            return await task_queue.delete_dead(ids)

    deleted = run_async(go)
    typer.echo(f"deleted {deleted} task(s)")
    if deleted < len(ids):
        raise typer.Exit(1)


@app.command("purge")
def purge(
    older_than: Annotated[str, typer.Option(help="Age, e.g. 168h or 30d.")],
    dry_run: DryRun = False,
    database_url: DatabaseUrl = None,
    via_api: ViaApi = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete every dead task dead-lettered longer ago than --older-than."""
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise InvalidTask(f"--older-than: {exc}") from None
    if via_api:
        with connect(ConnectionFlags()) as client:
            body = client.post("/dlq/purge", {"olderThanSeconds": round(age), "dryRun": dry_run})
        if dry_run:
            _show_preview("purge", body.get("byQueue") or {}, as_json)
        elif as_json:
            print_json(body)
        else:
            typer.echo(f"purged {body.get('purged', 0)} task(s)")
        return
    settings = settings_for(database_url)
    cutoff = datetime.now(UTC) - timedelta(seconds=age)
    if dry_run:

        async def preview() -> dict[str, int]:
            async with queue_session(settings) as task_queue:
                return await task_queue.dead_preview(DeadFilter(dead_before=cutoff), limit=None)

        _show_preview("purge", run_async(preview), as_json)
        return

    async def go() -> int:
        async with queue_session(settings) as task_queue:
            return await task_queue.purge_dead(cutoff)

    purged = run_async(go)
    if as_json:
        print_json({"purged": purged})
        return
    typer.echo(f"purged {purged} task(s) dead before {cutoff.isoformat()}")


@app.command("stats")
def stats(database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Dead-letter counts by queue and handler."""
    settings = settings_for(database_url)

    async def go() -> DeadStats:
        async with queue_session(settings) as task_queue:
            return await task_queue.dead_stats()

    result = run_async(go)
    data: dict[str, Any] = {
        "total": result.total,
        "byQueue": result.by_queue,
        "byHandler": result.by_handler,
        "oldestDeadAt": iso(result.oldest_dead_at),
        "newestDeadAt": iso(result.newest_dead_at),
    }
    if as_json:
        print_json(data)
        return
    for name, value in data.items():
        typer.echo(f"{name:>13}: {inline(str(value))}")
