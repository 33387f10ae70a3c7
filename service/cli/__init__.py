"""The ``longshore`` command line.

Process commands (``serve``, ``worker``, ``migrate``) and the operator tools ``tasks``,
``dlq``, ``queues``, ``runs prune`` and ``images prune`` work directly on the database named
by ``WORKER_DATABASE_URL`` (or ``--database-url``); they also work while the service is
down. The client commands ``jobs``, ``runs``, ``schedules``, ``secrets``, ``notifications``,
``audit``, ``maintenance`` and the task actions (``tasks complete|fail|run-now|reschedule|
remove``) talk to the admin API (see :mod:`service.cli.api`), with the same roles, approval
and audit as any API client. Every failure is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import sys

import click
import typer
from typer.exceptions import TyperException

from service.cli import (
    audit,
    certs,
    dlq,
    images,
    jobs,
    maintenance,
    notifications,
    queues,
    run,
    runs,
    schedules,
    secrets,
    task_actions,
    tasks,
)
from service.cli.common import command_group
from service.cli.terminal import inline
from store.errors import LongshoreError

app = command_group(
    "Run containerized jobs from versioned sources through durable queues.", name="longshore"
)
run.register(app)
task_actions.register(tasks.app)
app.add_typer(tasks.app, name="tasks")
app.add_typer(dlq.app, name="dlq")
app.add_typer(queues.app, name="queues")
app.add_typer(certs.app, name="certs")
app.add_typer(jobs.app, name="jobs")
app.add_typer(runs.app, name="runs")
app.add_typer(images.app, name="images")
app.add_typer(schedules.app, name="schedules")
app.add_typer(audit.app, name="audit")
app.add_typer(maintenance.app, name="maintenance")
app.add_typer(secrets.app, name="secrets")
app.add_typer(notifications.app, name="notifications")


_ABORTS: tuple[type[BaseException], ...] = (click.exceptions.Abort, typer.Abort, KeyboardInterrupt)

# Typer 0.29 raises usage errors of its own copy of click, whose base class is not
# ``click.ClickException``: catch both, so a mistyped command is one usage line, not a
# traceback.
_USAGE_ERRORS: tuple[type[Exception], ...] = (click.ClickException, TyperException)


def main() -> None:
    """Entry point of the ``longshore`` console script."""
    try:
        # Outside standalone mode click *returns* the status of ``typer.Exit(n)``.
        status = app(prog_name="longshore", standalone_mode=False)
    except _ABORTS:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except _USAGE_ERRORS as exc:
        sys.exit(_show_usage_error(exc))
    except LongshoreError as exc:
        # The message may quote a job's or a source's text (an error, a name).
        typer.echo(f"error: {inline(str(exc))}", err=True)
        sys.exit(1)
    if isinstance(status, int) and status:
        sys.exit(status)


def _show_usage_error(exc: Exception) -> int:
    """Print a command-line error as click does (usage line, hint, message) and return its
    exit status (2 for usage errors)."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:
        typer.echo(f"error: {exc}", err=True)
    code = getattr(exc, "exit_code", 2)
    return code if isinstance(code, int) else 2
