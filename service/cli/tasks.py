"""``longshore tasks``: enqueue, list, show, cancel and count tasks (on the database); the
task actions (complete, fail, run-now, reschedule, remove) go through the admin API
(:mod:`service.cli.task_actions`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from service.cli.api import connection_callback
from service.cli.common import (
    DatabaseUrl,
    JsonFlag,
    command_group,
    print_json,
    print_table,
    queue_json,
    queue_session,
    run_async,
    settings_for,
    short,
    task_json,
)
from service.units import parse_duration
from store.errors import InvalidTask, PermanentFailure, TaskNotFound
from store.queue.models import (
    EnqueueResult,
    KeyMode,
    NewTask,
    Priority,
    QueueInfo,
    Task,
    TaskFilter,
    TaskState,
)
from store.queue.retry import RetryPolicy

app = command_group(
    "Enqueue, inspect and cancel tasks on the database; complete, fail, run-now, reschedule "
    "and remove them through the admin API (its roles and audit log; --url, --token, --cert, "
    "--key and --ca go before the command).",
    callback=connection_callback,
)

ENQUEUE_CHUNK = 1000
MAX_COUNT = 1_000_000


def parse_payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidTask(f"--payload is not valid JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(value, dict):
        raise InvalidTask(f"--payload must be a JSON object, got {type(value).__name__}")
    return value


def parse_run_at(text: str, now: datetime) -> datetime:
    """``now``, ``+<duration>`` (e.g. ``+30s``), or an ISO 8601 time (naive = UTC)."""
    value = text.strip()
    if value == "now":
        return now
    if value.startswith("+"):
        try:
            return now + timedelta(seconds=parse_duration(value[1:]))
        except ValueError as exc:
            raise InvalidTask(f"--run-at: {exc}") from None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTask(
            f"--run-at {text!r} is not a time (use ISO 8601 like 2026-01-31T09:00:00Z, "
            "'now' or '+30s')"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("enqueue")
def enqueue(
    handler: Annotated[str, typer.Argument(help="Handler name, e.g. builtin.noop.")],
    payload: Annotated[str, typer.Option(help="JSON object given to the handler.")] = "{}",
    queue: Annotated[str | None, typer.Option(help="Queue (default: the default queue).")] = None,
    priority: Annotated[
        str, typer.Option(help="Integer (lower runs first) or a level like fast_high.")
    ] = "0",
    key: Annotated[str | None, typer.Option(help="Idempotency key.")] = None,
    key_mode: Annotated[
        str, typer.Option(help="replace | preserve_run_at | dedupe")
    ] = KeyMode.REPLACE.value,
    run_at: Annotated[
        str | None, typer.Option(help="When to run: ISO 8601, 'now' or '+30s'.")
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="Starts before dead-lettering (default: policy's).")
    ] = None,
    retry: Annotated[
        str, typer.Option(help="Retry policy: default | fast | aggressive | conservative")
    ] = "default",
    count: Annotated[int, typer.Option(help="Enqueue this many copies.")] = 1,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue a task (validated completely before anything is written)."""
    # The handler registry (the job runner and its engine code) is loaded by this command.
    from service.builtins import PAYLOAD_CHECKS
    from service.runtime import build_registry

    settings = settings_for(database_url)
    known = build_registry()
    if handler not in known:
        raise InvalidTask(f"unknown handler {handler!r} (known: {', '.join(known.names())})")
    body = parse_payload(payload)
    check = PAYLOAD_CHECKS.get(handler)
    if check is not None:
        try:
            check(body)
        except PermanentFailure as exc:
            raise InvalidTask(f"--payload: {exc}") from None
    if max_attempts is not None and max_attempts < 1:
        raise InvalidTask(f"--max-attempts must be at least 1, got {max_attempts}")
    if not 1 <= count <= MAX_COUNT:
        raise InvalidTask(f"--count must be between 1 and {MAX_COUNT}, got {count}")
    if key is not None and count > 1:
        raise InvalidTask("--key cannot be combined with --count above 1 (one key, one task)")
    now = datetime.now(UTC)
    template = NewTask(
        handler=handler,
        payload=body,
        queue=queue or settings.admin_default_queue,
        priority=Priority.parse(priority),
        run_at=parse_run_at(run_at, now) if run_at else None,
        key=key,
        key_mode=KeyMode.parse(key_mode),
        retry=RetryPolicy.preset(retry, max_attempts=max_attempts),
    )

    async def go() -> list[EnqueueResult]:
        async with queue_session(settings) as task_queue:
            if count == 1:
                return [await task_queue.enqueue(template)]
            results: list[EnqueueResult] = []
            for start in range(0, count, ENQUEUE_CHUNK):
                size = min(ENQUEUE_CHUNK, count - start)
                results += await task_queue.enqueue_many([template] * size)
            return results

    results = run_async(go)
    if as_json:
        if count == 1:
            print_json({"task": task_json(results[0].task), "outcome": results[0].outcome})
        else:
            print_json(
                {
                    "enqueued": len(results),
                    "firstId": results[0].task.id,
                    "lastId": results[-1].task.id,
                }
            )
        return
    if count == 1:
        result = results[0]
        typer.echo(f"task {result.task.id} on queue {result.task.queue}: {result.outcome}")
    else:
        typer.echo(f"enqueued {len(results)} tasks on queue {template.queue}")


@app.command("list")
def list_tasks(
    state: Annotated[
        str | None, typer.Option(help="ready | scheduled | running | dead | done")
    ] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    handler: Annotated[str | None, typer.Option()] = None,
    search: Annotated[
        str | None, typer.Option(help="Substring of handler/key/error/payload.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """List tasks, oldest first."""
    settings = settings_for(database_url)
    wanted = _parse_state(state)

    async def go() -> Any:
        async with queue_session(settings) as task_queue:
            return await task_queue.list_tasks(
                TaskFilter(state=wanted, queue=queue, handler=handler, search=search),
                limit=limit,
                offset=offset,
            )

    page = run_async(go)
    if as_json:
        print_json({"tasks": [task_json(t) for t in page.items], "total": page.total})
        return
    _print_tasks(page.items)
    typer.echo(f"{len(page.items)} of {page.total}")


@app.command("show")
def show(
    task_id: Annotated[int, typer.Argument()],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one task in full."""
    settings = settings_for(database_url)

    async def go() -> Task | None:
        async with queue_session(settings) as task_queue:
            return await task_queue.get_task(task_id)

    task = run_async(go)
    if task is None:
        raise TaskNotFound(f"no task with id {task_id}")
    print_json(task_json(task)) if as_json else _print_detail(task)


@app.command("cancel")
def cancel(task_id: Annotated[int, typer.Argument()], database_url: DatabaseUrl = None) -> None:
    """Cancel a waiting task (a running one cannot be cancelled here)."""
    settings = settings_for(database_url)

    async def go() -> Task:
        async with queue_session(settings) as task_queue:
            return await task_queue.cancel(task_id)

    task = run_async(go)
    typer.echo(f"cancelled task {task.id} ({task.handler} on {task.queue})")


@app.command("stats")
def stats(database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Per-queue counters: ready, scheduled, running, dead, completed, failed."""
    settings = settings_for(database_url)

    async def go() -> tuple[list[QueueInfo], bool]:
        async with queue_session(settings) as task_queue:
            return await task_queue.list_queues(), await task_queue.is_global_paused()

    queues, paused = run_async(go)
    if as_json:
        print_json({"queues": [queue_json(q) for q in queues], "dequeuePaused": paused})
        return
    print_table(
        [
            "queue",
            "ready",
            "scheduled",
            "running",
            "dead",
            "completed",
            "failed",
            "weight",
            "limit",
            "paused",
        ],
        [
            [
                q.name,
                q.ready,
                q.scheduled,
                q.running,
                q.dead,
                q.completed,
                q.failed,
                q.weight,
                q.concurrency_limit or "-",
                "yes" if q.paused else "no",
            ]
            for q in queues
        ],
    )
    if paused:
        typer.echo("dequeue is paused globally")


def _parse_state(state: str | None) -> TaskState | None:
    if state is None:
        return None
    try:
        return TaskState(state)
    except ValueError:
        names = ", ".join(s.value for s in TaskState)
        raise InvalidTask(f"--state must be one of {names}, got {state!r}") from None


def _print_tasks(items: list[Task]) -> None:
    print_table(
        ["id", "queue", "handler", "state", "prio", "attempts", "run at", "last error"],
        [
            [
                t.id,
                t.queue,
                t.handler,
                t.state.value,
                t.priority,
                f"{t.attempts}/{t.max_attempts}",
                t.run_at.isoformat(timespec="seconds"),
                short(t.last_error, 40),
            ]
            for t in items
        ],
    )


def _print_detail(task: Task) -> None:
    for name, value in task_json(task).items():
        shown = json.dumps(value) if isinstance(value, dict) else value
        typer.echo(f"{name:>15}: {'' if shown is None else shown}")
