"""The ``longshore`` command line.

Operator tools here work directly on the database named by ``WORKER_DATABASE_URL`` (or
``--database-url``). Every failure is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import sys

import click
import typer

from service.cli import certs, dlq, queues, run, tasks
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
