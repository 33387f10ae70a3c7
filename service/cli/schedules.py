"""``longshore schedules``: durable cron schedules, over the admin API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from service.cli.api import ApiError, api_client, connection_callback
from service.cli.common import JsonFlag, command_group, print_json, print_record, print_table

app = command_group(
    "Create, inspect, pause, resume, run and delete schedules (over the admin API).",
    callback=connection_callback,
)

Name = Annotated[str, typer.Argument(help="The schedule's name.")]


def _path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ApiError(f"invalid schedule name {name!r}")
    return f"/schedules/{name}"


@app.command("create")
def create(
    ctx: typer.Context,
    name: Name,
    spec: Annotated[
        str,
        typer.Option(help="crontab(5) spec, optionally with seconds, or @daily / @every 5m."),
    ],
    timezone: Annotated[str | None, typer.Option(help="IANA zone (default UTC).")] = None,
    factory: Annotated[
        str | None, typer.Option(help="Factory (a job or handler name; default: NAME).")
    ] = None,
    payload: Annotated[str | None, typer.Option(help="JSON object given to the factory.")] = None,
    overlap: Annotated[
        str | None, typer.Option("--overlap", help="allow | forbid | replace")
    ] = None,
    misfire_grace: Annotated[
        int | None, typer.Option("--misfire-grace", help="Seconds a late tick may still fire.")
    ] = None,
    catch_up: Annotated[str | None, typer.Option("--catch-up", help="none | latest")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create or update a schedule."""
    body: dict[str, Any] = {"name": name, "spec": spec}
    if payload is not None:
        try:
            body["payload"] = json.loads(payload)
        except ValueError:
            raise ApiError("--payload must be a JSON object") from None
        if not isinstance(body["payload"], dict):
            raise ApiError("--payload must be a JSON object")
    optional = {
        "timezone": timezone,
        "factory": factory,
        "overlapPolicy": overlap,
        "misfireGraceSeconds": misfire_grace,
        "catchUp": catch_up,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if paused:
        body["paused"] = True
    with api_client(ctx) as client:
        result = client.post("/schedules", body)
    schedule = result.get("schedule", result) if isinstance(result, dict) else body
    if as_json:
        print_json(schedule)
        return
    typer.echo(f"schedule {name} saved; next run {schedule.get('nextRun') or 'none'}")


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List schedules with their status and next run."""
    with api_client(ctx) as client:
        body = client.get("/schedules", limit=limit, offset=offset)
    if as_json:
        print_json(body)
        return
    items = body.get("schedules", [])
    print_table(
        ["name", "spec", "timezone", "factory", "status", "next run", "last run"],
        [
            [
                s.get("name"),
                s.get("spec") or s.get("schedule"),
                s.get("timezone"),
                s.get("factory"),
                s.get("status"),
                s.get("nextRun"),
                s.get("lastRun"),
            ]
            for s in items
        ],
    )
    typer.echo(f"{len(items)} of {body.get('total', len(items))}")


@app.command("show")
def show(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Show one schedule."""
    with api_client(ctx) as client:
        body = client.get(_path(name))
    schedule = body.get("schedule", body)
    if as_json:
        print_json(schedule)
        return
    print_record(schedule)


def _set_paused(ctx: typer.Context, name: str | None, paused: bool) -> None:
    path = "/schedules/pause" if name is None else f"{_path(name)}/pause"
    with api_client(ctx) as client:
        client.post(path, {"paused": paused})
    what = "every schedule" if name is None else f"schedule {name}"
    typer.echo(f"{what} {'paused' if paused else 'resumed'}")


@app.command("pause")
def pause(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The schedule (omit with --all).")] = None,
    every: Annotated[bool, typer.Option("--all", help="Pause every schedule.")] = False,
) -> None:
    """Pause one schedule, or all with --all."""
    _set_paused(ctx, _one_or_all(name, every), True)


@app.command("resume")
def resume(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The schedule (omit with --all).")] = None,
    every: Annotated[bool, typer.Option("--all", help="Resume every schedule.")] = False,
) -> None:
    """Resume one schedule (from now: missed ticks are not replayed), or all with --all."""
    _set_paused(ctx, _one_or_all(name, every), False)


def _one_or_all(name: str | None, every: bool) -> str | None:
    if every == (name is not None):
        raise ApiError("give a schedule name or --all (not both)")
    return name


@app.command("run")
def run_now(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Fire a schedule now (also when paused; its overlap policy applies)."""
    with api_client(ctx) as client:
        body = client.post(f"{_path(name)}/run")
    if as_json:
        print_json(body)
        return
    typer.echo(f"schedule {name}: {json.dumps(body)}")


@app.command("preview")
def preview(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="A spec, e.g. '30 9 * * 1-5' or @hourly.")],
    timezone: Annotated[str, typer.Option(help="IANA zone the spec is read in.")] = "UTC",
    count: Annotated[int, typer.Option(min=1, max=50, help="How many fire times.")] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Show the next fire times of a spec in its time zone and in UTC (changes nothing)."""
    with api_client(ctx) as client:
        body = client.post(
            "/schedules/preview", {"spec": spec, "timezone": timezone, "count": count}
        )
    if as_json:
        print_json(body)
        return
    times = body.get("fireTimes", [])
    print_table([timezone, "UTC"], [[t.get("at"), t.get("atUtc")] for t in times])
    if not times:
        typer.echo("this spec fires no more")


@app.command("delete")
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a schedule (its events are kept)."""
    with api_client(ctx) as client:
        client.delete(_path(name))
    typer.echo(f"schedule {name} deleted")


__all__ = ["app"]
