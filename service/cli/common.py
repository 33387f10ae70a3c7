"""Helpers shared by the CLI commands: settings, the store, output formatting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from service.cli.terminal import inline
from service.datadir import restrict_new_files
from service.logs import configure_logging

if TYPE_CHECKING:
    # The settings (pydantic) and the store backends are imported by the commands that use
    # them, not when ``longshore`` starts.
    from service.settings import Settings
    from store.queue.models import QueueInfo, Task
    from store.queue.protocol import TaskQueue

T = TypeVar("T")


def command_group(help: str, **options: Any) -> typer.Typer:
    """A command group with Longshore's CLI conventions: plain-text help (paragraphs
    rewrapped to the terminal, no markup), help when called without a command, and errors
    left to :func:`service.cli.main` (one line, never a traceback)."""
    options.setdefault("no_args_is_help", True)
    return typer.Typer(
        help=help,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=False,
        **options,
    )


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Database to work on (default: WORKER_DATABASE_URL, else the embedded store).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
RawFlag = Annotated[
    bool,
    typer.Option(
        "--raw",
        help="Print the output's exact bytes (by default terminal control and bidi characters "
        "are shown as escapes).",
    ),
]


def settings_for(
    database_url: str | None, *, long_running: bool = False, **overrides: Any
) -> Settings:
    """Settings from the environment, with command-line flags taking precedence.

    One-shot commands log only warnings and errors unless ``WORKER_LOG_LEVEL=DEBUG``: their
    output is the answer, not a story of opening the database. Whatever the command creates
    from here on is private to its user (``service.datadir``).
    """
    from service.settings import load_settings

    restrict_new_files()
    if database_url is not None:
        overrides["database_url"] = database_url
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    level = settings.log_level
    if not long_running and level == "INFO":
        level = "WARNING"
    configure_logging(level, settings.log_format)
    return settings


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    import asyncio  # by the commands that run something, not when ``longshore`` starts

    return asyncio.run(_call(factory))


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


@asynccontextmanager
async def queue_session(settings: Settings) -> AsyncIterator[TaskQueue]:
    from service.backends import open_queue

    async with open_queue(settings) as queue:
        yield queue


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def task_json(task: Task) -> dict[str, Any]:
    """A task as the CLI prints it with ``--json`` (camelCase, as the API will)."""
    return {
        "id": task.id,
        "queue": task.queue,
        "handler": task.handler,
        "state": task.state.value,
        "priority": task.priority,
        "runAt": iso(task.run_at),
        "attempts": task.attempts,
        "maxAttempts": task.max_attempts,
        "retry": task.retry.to_json(),
        "key": task.key,
        "lastError": task.last_error,
        "leaseOwner": task.lease_owner,
        "leaseExpiresAt": iso(task.lease_expires_at),
        "createdAt": iso(task.created_at),
        "updatedAt": iso(task.updated_at),
        "deadAt": iso(task.dead_at),
        "replayedBy": task.replayed_by,
        "replayedAt": iso(task.replayed_at),
        "replayCount": task.replay_count,
        "payload": task.payload,
    }


def queue_json(info: QueueInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "paused": info.paused,
        "weight": info.weight,
        "weightOverridden": info.weight_overridden,
        "concurrencyLimit": info.concurrency_limit,
        "ready": info.ready,
        "scheduled": info.scheduled,
        "running": info.running,
        "dead": info.dead,
        "completed": info.completed,
        "failed": info.failed,
    }


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


def print_record(record: dict[str, Any], *, skip: Sequence[str] = ()) -> None:
    """``key: value`` lines for a record's non-empty fields (objects and lists as JSON)."""
    for key, value in record.items():
        if key in skip or value in (None, "", [], {}):
            continue
        shown = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        typer.echo(f"{key}: {inline(shown)}")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table for people."""
    cells = [[("" if c is None else inline(str(c))) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    typer.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    flat = inline(" ".join(text.split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"
