"""``longshore notifications``: notification rules, over the admin API (channels
``webhook``, ``chat`` and ``email``).

The shared secret of a webhook is read from a file (``--secret-file``) or standard input
(``--secret-stdin``), never from the command line (which other users can read in the process
list and the shell's history); no command ever prints it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cli.api import ApiError, api_client, connection_callback
from service.cli.common import JsonFlag, command_group, print_json, print_record, print_table
from service.cli.terminal import inline

app = command_group(
    "Define, list, show and delete notification rules (over the admin API).",
    callback=connection_callback,
)

Name = Annotated[str, typer.Argument(help="The rule's name.")]
EVENTS = "failed, failed_in_a_row, recovered, retries_exhausted, timed_out, slow, missed"


def _path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ApiError(f"invalid rule name {name!r}")
    return f"/notifications/rules/{name}"


def _secret(secret_file: Path | None, secret_stdin: bool) -> str | None:
    if secret_file is not None and secret_stdin:
        raise ApiError("give --secret-file or --secret-stdin, not both")
    if secret_file is not None:
        try:
            text = secret_file.read_text("utf-8")
        except OSError as exc:
            raise ApiError(f"--secret-file: cannot read {secret_file}: {exc.strerror}") from None
    elif secret_stdin:
        text = sys.stdin.read()
    else:
        return None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ApiError("the secret is empty")
    return secret


@app.command("set")
def set_rule(
    ctx: typer.Context,
    name: Name,
    url: Annotated[
        str,
        typer.Option(
            help="The receiver's http(s) URL (operator-trusted); for --channel email, "
            "mailto:a@example.com,b@example.com."
        ),
    ],
    event: Annotated[list[str], typer.Option("--event", help=f"Repeatable: {EVENTS}.")],
    scope: Annotated[str, typer.Option(help="global | job | schedule")] = "global",
    target: Annotated[
        str, typer.Option(help="The job or schedule (for --scope job or schedule).")
    ] = "",
    channel: Annotated[
        str, typer.Option(help="webhook | chat | email (email needs WORKER_SMTP_URL)")
    ] = "webhook",
    secret_file: Annotated[
        Path | None, typer.Option("--secret-file", help="Read the signing secret from a file.")
    ] = None,
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the signing secret from stdin.")
    ] = False,
    template: Annotated[
        str | None,
        typer.Option(help="Chat or mail text with {event}, {job}, {status}, {error}, ..."),
    ] = None,
    failures_in_a_row: Annotated[
        int | None, typer.Option("--failures-in-a-row", help="N of failed_in_a_row.")
    ] = None,
    warn_after: Annotated[
        int | None, typer.Option("--warn-after", help="Seconds after which a run is slow.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds a delivery may take (0.1-60).")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Save it disabled.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create or replace a rule (an edit without a secret keeps the stored one)."""
    body: dict[str, Any] = {
        "scope": scope,
        "target": target,
        "events": event,
        "channel": channel,
        "url": url,
        "enabled": not disabled,
    }
    optional = {
        "secret": _secret(secret_file, secret_stdin),
        "template": template,
        "failuresInARow": failures_in_a_row,
        "warnAfterSeconds": warn_after,
        "timeoutSeconds": timeout,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    with api_client(ctx) as client:
        result = client.put(_path(name), body)
    rule = result.get("rule", result) if isinstance(result, dict) else {}
    if as_json:
        print_json(rule)
        return
    typer.echo(f"notification rule {name} saved ({', '.join(rule.get('events', event))})")


@app.command("list")
def list_rules(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the rules (secrets are never shown)."""
    with api_client(ctx) as client:
        body = client.get("/notifications/rules")
    if as_json:
        print_json(body)
        return
    rules = body.get("rules", [])
    print_table(
        ["name", "scope", "target", "events", "channel", "enabled"],
        [
            [
                r.get("name"),
                r.get("scope"),
                r.get("target") or "*",
                ",".join(r.get("events", [])),
                r.get("channel"),
                r.get("enabled"),
            ]
            for r in rules
        ],
    )
    typer.echo(f"{len(rules)} rules")


@app.command("show")
def show(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Show one rule (whether a secret is set, never the secret)."""
    with api_client(ctx) as client:
        body = client.get(_path(name))
    rule = body.get("rule", body)
    if as_json:
        print_json(rule)
        return
    print_record(rule)


@app.command("delete")
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a rule (notifications already queued for it are dead-lettered)."""
    with api_client(ctx) as client:
        client.delete(_path(name))
    typer.echo(f"notification rule {name} deleted")


POLL_SECONDS = 0.5


@app.command("test")
def send_test(
    ctx: typer.Context,
    name: Name,
    wait: Annotated[
        float | None,
        typer.Option(
            help="Wait up to SECONDS for the delivery: exit 0 when delivered, 1 when it "
            "failed (its last error is printed)."
        ),
    ] = None,
) -> None:
    """Send the rule a test notification (enabled or not), delivered like a real one."""
    if wait is not None and not 0 < wait <= 3600:
        raise ApiError("--wait must be 0-3600 seconds")
    with api_client(ctx) as client:
        sent = client.post(f"{_path(name)}/test")
        task_id = str(sent.get("taskId", ""))
        typer.echo(f"test notification of rule {inline(name)} queued: task {inline(task_id)}")
        if wait is None:
            return
        deadline = time.monotonic() + wait
        while True:
            task = client.get(f"/tasks/{task_id}").get("task", {})
            state = str(task.get("state", ""))
            if state == "done":
                typer.echo("delivered")
                return
            if state == "dead" or time.monotonic() >= deadline:
                error = inline(str(task.get("lastError") or "no error recorded yet"))
                verdict = "failed" if state == "dead" else f"not delivered after {wait:g}s"
                typer.echo(f"{verdict} ({state}): {error}", err=True)
                raise typer.Exit(1)
            time.sleep(POLL_SECONDS)


__all__ = ["app"]
