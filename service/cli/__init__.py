"""The ``longshore`` command line.

Process commands (``serve``, ``worker``, ``migrate``) and the operator tools ``tasks``,
``dlq`` and ``queues`` work directly on the database named by ``WORKER_DATABASE_URL`` (or
``--database-url``); they also work while the service is down. The client commands
``jobs``, ``runs``, ``schedules`` and ``audit`` talk to the admin API (see
:mod:`service.cli.api`), with the same roles, approval and audit as any API client. Every
failure is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import sys

import click
import typer

from service.cli import audit, certs, dlq, jobs, queues, run, runs, schedules, tasks
from store.errors import LongshoreError

app = typer.Typer(
    name="longshore",
    help="Run containerized jobs from versioned sources through durable queues.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
run.register(app)
app.add_typer(tasks.app, name="tasks")
app.add_typer(dlq.app, name="dlq")
app.add_typer(queues.app, name="queues")
app.add_typer(certs.app, name="certs")
app.add_typer(jobs.app, name="jobs")
app.add_typer(runs.app, name="runs")
app.add_typer(schedules.app, name="schedules")
app.add_typer(audit.app, name="audit")


def main() -> None:
    """Entry point of the ``longshore`` console script."""
    try:
        # Outside standalone mode click *returns* the status of ``typer.Exit(n)``.
        status = app(prog_name="longshore", standalone_mode=False)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LongshoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(status, int) and status:
        sys.exit(status)
