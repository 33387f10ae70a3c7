"""``longshore tasks complete|fail|run-now|reschedule|remove``: seed 004's task actions,
over the admin API (its roles, approval and audit log; the connection flags go before the
command: ``longshore tasks --url ... complete 42``).

A running task is refused (409): an operator's action never touches a task a worker holds
a lease on; ``longshore maintenance force-unlock`` takes tasks back from a worker that is
gone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from service.cli.api import ApiError, api_client
from service.cli.common import JsonFlag, print_json
from service.cli.tasks import parse_run_at
from store.errors import InvalidTask

TaskId = Annotated[int, typer.Argument(help="The task's id.", min=1)]


def register(app: typer.Typer) -> None:
    app.command("complete")(complete)
    app.command("fail")(fail)
    app.command("run-now")(run_now)
    app.command("reschedule")(reschedule)
    app.command("remove")(remove)


def _act(ctx: typer.Context, path: str, body: dict[str, Any] | None, as_json: bool) -> None:
    with api_client(ctx) as client:
        result = client.post(path, body)
    if as_json:
        print_json(result)
        return
    task = result.get("task") or {}
    where = f" on queue {task['queue']}" if task.get("queue") else ""
    typer.echo(
        f"task {result.get('taskId')}: {result.get('previousState')} -> "
        f"{result.get('state')}{where}"
    )


def complete(ctx: typer.Context, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Complete a ready, scheduled or dead task without running it (a keyed one is kept
    as done for its key's retention)."""
    _act(ctx, f"/tasks/{task_id}/complete", None, as_json)


def fail(
    ctx: typer.Context,
    task_id: TaskId,
    reason: Annotated[str, typer.Option(help="Why: recorded as the task's last error.")],
    as_json: JsonFlag = False,
) -> None:
    """Fail a ready or scheduled task for good: it goes to the dead-letter queue."""
    _act(ctx, f"/tasks/{task_id}/fail", {"reason": reason}, as_json)


def run_now(ctx: typer.Context, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Make a ready or scheduled task ready now."""
    _act(ctx, f"/tasks/{task_id}/run-now", None, as_json)


def reschedule(
    ctx: typer.Context,
    task_id: TaskId,
    run_at: Annotated[
        str | None, typer.Option(help="When to run: ISO 8601, 'now' or '+30s'.")
    ] = None,
    priority: Annotated[int | None, typer.Option(help="-1000 to 1000; lower first.")] = None,
    attempts: Annotated[int | None, typer.Option(help="Attempts used so far.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Starts before dead-lettering.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a waiting task's run time, priority, attempts or max attempts (at least one)."""
    body: dict[str, Any] = {
        "priority": priority,
        "attempts": attempts,
        "maxAttempts": max_attempts,
    }
    if run_at is not None:
        body["runAt"] = parse_run_at(run_at, datetime.now(UTC)).isoformat()
    body = {name: value for name, value in body.items() if value is not None}
    if not body:
        raise InvalidTask("give at least one of --run-at, --priority, --attempts, --max-attempts")
    _act(ctx, f"/tasks/{task_id}/reschedule", body, as_json)


def remove(
    ctx: typer.Context,
    key: Annotated[str, typer.Option(help="The task's idempotency key.")],
    queue: Annotated[str | None, typer.Option(help="Only if the task is in this queue.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete the task holding an idempotency key (ready, scheduled, dead or done)."""
    if not key:
        raise ApiError("--key must not be empty")
    body: dict[str, Any] = {"key": key}
    if queue is not None:
        body["queue"] = queue
    _act(ctx, "/tasks/remove", body, as_json)
