"""``longshore runs``: run records, their output and artifacts, over the admin API."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from service.cli.api import ApiError, api_client, connection_callback
from service.cli.common import (
    JsonFlag,
    RawFlag,
    command_group,
    print_json,
    print_record,
    print_table,
)
from service.cli.follow import follow_run
from service.cli.runs_prune import prune
from service.cli.terminal import inline, safe_chunks

if TYPE_CHECKING:
    from rich.progress import Progress

app = command_group(
    "Inspect runs, read their output, cancel them, fetch artifacts (over the admin API); "
    "prune them (on the database).",
    callback=connection_callback,
)
app.command("prune")(prune)
artifacts_app = command_group("A run's artifacts.")
app.add_typer(artifacts_app, name="artifacts")

RunId = Annotated[str, typer.Argument(help="The run id.")]


def _run_path(run_id: str) -> str:
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ApiError(f"invalid run id {run_id!r}")
    return f"/runs/{run_id}"


@app.command("list")
def list_runs(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option(help="Only runs of this job.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first."""
    with api_client(ctx) as client:
        body = client.get("/runs", job=job, status=status, limit=limit, offset=offset)
    if as_json:
        print_json(body)
        return
    runs = body.get("runs", [])
    print_table(
        ["run", "job", "attempt", "trigger", "status", "created", "exit", "error"],
        [
            [
                run.get("runId"),
                run.get("job"),
                run.get("attempt"),
                run.get("trigger"),
                run.get("status"),
                run.get("createdAt") or run.get("queuedAt"),
                run.get("exitCode"),
                (run.get("error") or "")[:50],
            ]
            for run in runs
        ],
    )
    typer.echo(f"{len(runs)} of {body.get('total', len(runs))}")


@app.command("show")
def show(ctx: typer.Context, run_id: RunId, as_json: JsonFlag = False) -> None:
    """Show one run record."""
    with api_client(ctx) as client:
        body = client.get(_run_path(run_id))
    run = body.get("run", body)
    if as_json:
        print_json(run)
        return
    print_record(run, skip=("artifacts",))
    for artifact in run.get("artifacts") or []:
        name = inline(str(artifact.get("name")))
        typer.echo(f"artifact: {name} ({artifact.get('sizeBytes')} bytes)")


@app.command("output")
def output(
    ctx: typer.Context,
    run_id: RunId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")
    ] = False,
    raw: RawFlag = False,
) -> None:
    """Print a run's retained output (head and tail when it was truncated). Terminal control
    and bidi characters are shown as escapes unless --raw."""
    with api_client(ctx) as client:
        if follow:
            follow_run(client, run_id, raw=raw)
            return
        with client.stream(f"{_run_path(run_id)}/output") as response:
            if raw:
                for chunk in response.iter_bytes():
                    sys.stdout.buffer.write(chunk)
            else:
                for text in safe_chunks(response.iter_bytes()):
                    sys.stdout.write(text)
        sys.stdout.flush()


@app.command("cancel")
def cancel(ctx: typer.Context, run_id: RunId) -> None:
    """Cancel a run: a queued one never starts, a running one's container is stopped."""
    with api_client(ctx) as client:
        body = client.post(f"{_run_path(run_id)}/cancel")
    run = body.get("run", {}) if isinstance(body, dict) else {}
    typer.echo(f"run {run_id}: cancel requested (status {run.get('status', 'unknown')})")


@artifacts_app.command("list")
def list_artifacts(ctx: typer.Context, run_id: RunId, as_json: JsonFlag = False) -> None:
    """List the artifacts a run left in its artifacts path."""
    with api_client(ctx) as client:
        body = client.get(f"{_run_path(run_id)}/artifacts")
    if as_json:
        print_json(body)
        return
    items = body.get("artifacts", [])
    print_table(
        ["name", "bytes", "sha256"],
        [[a.get("name"), a.get("sizeBytes"), a.get("sha256")] for a in items],
    )


@artifacts_app.command("download")
def download(
    ctx: typer.Context,
    run_id: RunId,
    name: Annotated[str, typer.Argument(help="The artifact's name.")],
    out: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (default: the name).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download one artifact; its sha256 is checked against the run record."""
    target = out or Path(Path(name).name or "artifact")
    if target.exists() and target.is_dir():
        target = target / (Path(name).name or "artifact")
    partial = target.with_name(target.name + ".part")
    with api_client(ctx) as client:
        listed = client.get(f"{_run_path(run_id)}/artifacts").get("artifacts", [])
        expected = next((a for a in listed if a.get("name") == name), None)
        if expected is None:
            raise ApiError(f"run {run_id} has no artifact named {name!r}")
        digest = hashlib.sha256()
        path = f"{_run_path(run_id)}/artifacts/{quote(name, safe='')}"
        try:
            with client.stream(path) as response, partial.open("wb") as handle:
                total = int(response.headers.get("content-length") or 0) or None
                with _progress(quiet) as progress:
                    bar = progress.add_task(name, total=total)
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                        digest.update(chunk)
                        progress.update(bar, advance=len(chunk))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if digest.hexdigest() != expected.get("sha256"):
        partial.unlink(missing_ok=True)
        raise ApiError(f"artifact {name!r}: sha256 mismatch, download discarded")
    os.replace(partial, target)
    typer.echo(f"{target} ({expected.get('sizeBytes')} bytes, sha256 {digest.hexdigest()})")


def _progress(quiet: bool) -> Progress:
    # rich is loaded by a download only, not when ``longshore`` starts.
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=quiet or not sys.stderr.isatty(),
        console=Console(stderr=True),
        transient=True,
    )


__all__ = ["app"]
