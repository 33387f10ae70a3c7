"""``longshore audit``: read and export the audit log, over the admin API."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from service.cli.api import ApiError, api_client, connection_callback
from service.cli.common import JsonFlag, command_group, print_json, print_table

app = command_group(
    "Read and export the audit log (over the admin API).",
    callback=connection_callback,
)

FORMATS = ("jsonl", "json", "csv")

Action = Annotated[str | None, typer.Option(help="Only this action, e.g. job.run.")]
Target = Annotated[str | None, typer.Option(help="Only this target.")]
Actor = Annotated[str | None, typer.Option(help="Only this actor.")]
Since = Annotated[str | None, typer.Option(help="From this time (RFC 3339 or epoch ms).")]
Until = Annotated[str | None, typer.Option(help="Up to this time (RFC 3339 or epoch ms).")]


@app.command("list")
def list_entries(
    ctx: typer.Context,
    action: Action = None,
    target: Target = None,
    actor: Actor = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The newest audit entries."""
    with api_client(ctx) as client:
        body = client.get(
            "/audit",
            action=action,
            target=target,
            actor=actor,
            since=since,
            until=until,
            limit=limit,
        )
    if as_json:
        print_json(body)
        return
    rows = body.get("events", body.get("entries", []))
    print_table(
        ["at", "actor", "action", "target", "status", "detail"],
        [
            [
                r.get("at"),
                r.get("actor"),
                r.get("action"),
                r.get("target"),
                r.get("status"),
                (r.get("detail") or "")[:60],
            ]
            for r in rows
        ],
    )


@app.command("export")
def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="jsonl | json | csv")] = "jsonl",
    out: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (default: stdout).")
    ] = None,
    action: Action = None,
    target: Target = None,
    actor: Actor = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many rows.")] = None,
) -> None:
    """Export the audit log, streamed (any size up to the service's export cap)."""
    if fmt not in FORMATS:
        raise ApiError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)}")
    params = {
        "format": fmt,
        "action": action,
        "target": target,
        "actor": actor,
        "since": since,
        "until": until,
        "limit": limit,
    }
    partial = out.with_name(out.name + ".part") if out is not None else None
    written = 0
    with api_client(ctx) as client:
        try:
            with client.stream("/audit/export", params=params) as response:
                sink = partial.open("wb") if partial is not None else sys.stdout.buffer
                try:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                        written += len(chunk)
                finally:
                    if partial is not None:
                        sink.close()
        except BaseException:
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise
    if out is not None and partial is not None:
        os.replace(partial, out)
        typer.echo(f"{out} ({written} bytes)", err=True)
    else:
        sys.stdout.flush()


__all__ = ["app"]
