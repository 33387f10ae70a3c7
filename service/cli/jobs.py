"""``longshore jobs``: job definitions and runs on demand, over the admin API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from jobrunner.errors import UnknownSource
from service.cli.api import ApiClient, ApiError, api_client, connection_callback
from service.cli.common import (
    JsonFlag,
    RawFlag,
    command_group,
    print_json,
    print_record,
    print_table,
)
from service.cli.follow import follow_run

app = command_group(
    "Define, inspect, run and delete container jobs (over the admin API).",
    callback=connection_callback,
)

Name = Annotated[str, typer.Argument(help="The job's name.")]


def load_definitions(path: Path) -> list[dict[str, Any]]:
    """The job definitions in ``path``: one JSON/YAML object, a list of them, or a YAML
    stream of documents (``-`` reads standard input)."""
    import yaml  # by the commands that read definitions, not when ``longshore`` starts

    try:
        text = typer.get_text_stream("stdin").read() if str(path) == "-" else path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiError(f"cannot read {path}: {exc}") from None
    try:
        documents = [json.loads(text)]
    except ValueError:
        try:
            documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        except yaml.YAMLError as exc:
            raise ApiError(f"{path}: neither JSON nor YAML: {_first_line(exc)}") from None
    found: list[dict[str, Any]] = []
    for document in documents:
        items = document if isinstance(document, list) else [document]
        for item in items:
            if not isinstance(item, dict):
                raise ApiError(f"{path}: a job definition must be an object (mapping)")
            found.append(item)
    if not found:
        raise ApiError(f"{path}: no job definition found")
    return found


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("-f", "--file", help="JSON or YAML file, or - for stdin.")],
    as_json: JsonFlag = False,
) -> None:
    """Create or update the job definitions in FILE (validated by the service)."""
    definitions = load_definitions(file)
    results = []
    with api_client(ctx) as client:
        for definition in definitions:
            body = client.post("/jobs", definition)
            job = body.get("job", body) if isinstance(body, dict) else definition
            results.append(job)
            if not as_json:
                typer.echo(f"job {job.get('name', definition.get('name'))} applied")
    if as_json:
        print_json({"jobs": results})


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List job definitions."""
    with api_client(ctx) as client:
        body = client.get("/jobs", limit=limit, offset=offset)
    if as_json:
        print_json(body)
        return
    jobs = body.get("jobs", [])
    print_table(
        ["name", "source", "version", "queue", "retries", "timeout"],
        [
            [
                job.get("name"),
                job.get("source"),
                _version(job),
                job.get("queue") or "",
                job.get("retries"),
                job.get("timeoutSeconds"),
            ]
            for job in jobs
        ],
    )
    typer.echo(f"{len(jobs)} of {body.get('total', len(jobs))}")


def _version(job: dict[str, Any]) -> str:
    """What the job builds, as its source type describes it (blank for a type this client
    does not know)."""
    # The source types (with their fetchers) are loaded when a job is shown, not at start.
    from jobrunner.sources import registry

    try:
        source = registry.get(job.get("source"))
    except UnknownSource:
        return ""
    fields = {name: str(value) for name, value in registry.from_api(job).items()}
    return source.describe(fields)


@app.command("show")
def show(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Show one job definition."""
    with api_client(ctx) as client:
        body = client.get(f"/jobs/{_segment(name)}")
    job = body.get("job", body)
    if as_json:
        print_json(job)
        return
    print_record(job)


@app.command("delete")
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a job definition (its runs and events are kept)."""
    with api_client(ctx) as client:
        client.delete(f"/jobs/{_segment(name)}")
    typer.echo(f"job {name} deleted")


@app.command("run")
def run(
    ctx: typer.Context,
    name: Name,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream the output; exit with the run's status.")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="NAME=VALUE: override an overridable parameter (repeatable)."
        ),
    ] = None,
    as_json: JsonFlag = False,
    raw: RawFlag = False,
) -> None:
    """Run a job now, with --param NAME=VALUE overriding parameters marked overridable
    (checked by the service). With --follow, print its output live (terminal control and
    bidi characters shown as escapes unless --raw) and exit 0 when it succeeds, 1 when it
    fails, 124 when it timed out, 125 when it was cancelled."""
    body = {"params": parse_params(param)} if param else None
    with api_client(ctx) as client:
        started = client.post(f"/jobs/{_segment(name)}/run", body)
        run_id = str(started.get("runId"))
        if as_json and not follow:
            print_json(started)
            return
        if not follow:
            typer.echo(f"run {run_id} queued (task {started.get('taskId')})")
            return
        typer.echo(f"run {run_id} queued; following its output", err=True)
        status = follow_run(client, run_id, raw=raw)
    raise typer.Exit(exit_status(status))


def parse_params(items: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` options as a mapping (the service converts and checks the values)."""
    params: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ApiError(f"--param {item!r}: expected NAME=VALUE")
        params[key] = value
    return params


EXIT_STATUS = {"succeeded": 0, "failed": 1, "timed_out": 124, "cancelled": 125}


def exit_status(status: str | None) -> int:
    return EXIT_STATUS.get(status or "", 1)


def _segment(name: str) -> str:
    """``name`` as one URL path segment (names never hold ``/``; refuse rather than
    address another route)."""
    if not name or "/" in name or name in (".", ".."):
        raise ApiError(f"invalid name {name!r}")
    return name


__all__ = ["ApiClient", "app", "exit_status", "load_definitions"]
