"""``longshore queues``: pause, weights, concurrency limits, and global dequeue pause."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.common import (
    DatabaseUrl,
    JsonFlag,
    command_group,
    print_json,
    queue_json,
    queue_session,
    run_async,
    settings_for,
)
from store.queue.models import QueueInfo, check_queue_name

app = command_group("Queue settings (persisted, seen by every worker).")

Name = Annotated[str, typer.Argument(help="Queue name.")]


def _show(info: QueueInfo, as_json: bool) -> None:
    if as_json:
        print_json(queue_json(info))
    else:
        limit = info.concurrency_limit or "none"
        typer.echo(
            f"{info.name}: paused={'yes' if info.paused else 'no'} weight={info.weight} "
            f"concurrency-limit={limit}"
        )


def _apply(database_url: str | None, name: str, action: str, value: int | None = None) -> QueueInfo:
    check_queue_name(name)
    settings = settings_for(database_url)

    async def go() -> QueueInfo:
        async with queue_session(settings) as task_queue:
            if action == "pause":
                return await task_queue.set_queue_paused(name, True)
            if action == "resume":
                return await task_queue.set_queue_paused(name, False)
            if action == "weight":
                assert value is not None
                return await task_queue.set_queue_weight(name, value)
            if action == "reset-weight":
                return await task_queue.reset_queue_weight(name)
            return await task_queue.set_queue_concurrency(name, value)

    return run_async(go)


@app.command("pause")
def pause(name: Name, database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Stop claims from a queue."""
    _show(_apply(database_url, name, "pause"), as_json)


@app.command("resume")
def resume(name: Name, database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Resume claims from a queue."""
    _show(_apply(database_url, name, "resume"), as_json)


@app.command("weight")
def weight(
    name: Name,
    value: Annotated[int, typer.Argument(help="1-1000; claims follow weights under load.")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Override a queue's weight."""
    _show(_apply(database_url, name, "weight", value), as_json)


@app.command("reset-weight")
def reset_weight(name: Name, database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Return a queue to its configured default weight."""
    _show(_apply(database_url, name, "reset-weight"), as_json)


@app.command("concurrency")
def concurrency(
    name: Name,
    limit: Annotated[int, typer.Argument(help="Max running at once (0 = no limit, 1 = serial).")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Cap how many tasks of a queue run at once across all workers."""
    if limit < 0:
        raise typer.BadParameter("limit must be 0 (no limit) or more")
    _show(_apply(database_url, name, "concurrency", limit or None), as_json)


@app.command("pause-all")
def pause_all(database_url: DatabaseUrl = None) -> None:
    """Pause dequeue globally (every queue, every worker)."""
    _global(database_url, True)
    typer.echo("dequeue paused")


@app.command("resume-all")
def resume_all(database_url: DatabaseUrl = None) -> None:
    """Resume dequeue globally."""
    _global(database_url, False)
    typer.echo("dequeue resumed")


def _global(database_url: str | None, paused: bool) -> None:
    settings = settings_for(database_url)

    async def go() -> None:
        async with queue_session(settings) as task_queue:
            await task_queue.set_global_paused(paused)

    run_async(go)
