"""``longshore secrets``: set, list and delete secrets, over the admin API.

A value is read from standard input or a file, never from the command line (where other
users of the host could read it in the process list or a shell history), and never
printed: ``list`` shows names, sizes and dates only.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated

import typer

from service.cli.api import ApiError, api_client, connection_callback
from service.cli.common import JsonFlag, command_group, print_json, print_table
from service.cli.jobs import _segment

app = command_group(
    "Set, list and delete secrets (values are never shown; over the admin API).",
    callback=connection_callback,
)

Name = Annotated[str, typer.Argument(help="The secret's name.")]


def read_value(file: Path | None, keep_newline: bool) -> bytes:
    """The value from ``file`` (or standard input); one trailing newline is dropped unless
    ``keep_newline`` (``echo`` adds one, and a value must match what the job prints)."""
    try:
        data = sys.stdin.buffer.read() if file is None or str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise ApiError(f"cannot read {file}: {exc.strerror}") from None
    if not keep_newline:
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
    if not data:
        raise ApiError("the secret's value is empty")
    return data


@app.command("set")
def set_secret(
    ctx: typer.Context,
    name: Name,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Read the value from this file (default: stdin)."),
    ] = None,
    keep_newline: Annotated[
        bool, typer.Option("--keep-newline", help="Keep a trailing newline of the value.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create or replace the secret NAME; its value is read from standard input or --file."""
    value = read_value(file, keep_newline)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    # Bytes that are not text (or hold NUL, which no JSON string of the API may) as base64.
    body = {"value": text}
    if "\0" in text:
        body = {"valueBase64": base64.b64encode(value).decode("ascii")}
    with api_client(ctx) as client:
        answer = client.request("PUT", f"/secrets/{_segment(name)}", body=body)
    if as_json:
        print_json(answer)
        return
    typer.echo(f"secret {name} set ({len(value)} bytes)")


@app.command("list")
def list_secrets(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the secrets: names, sizes and dates (never values)."""
    with api_client(ctx) as client:
        body = client.get("/secrets")
    if as_json:
        print_json(body)
        return
    rows = [
        [str(s.get("name")), str(s.get("sizeBytes")), str(s.get("updatedAt"))]
        for s in body.get("secrets", [])
    ]
    print_table(["NAME", "BYTES", "UPDATED"], rows)


@app.command("delete")
def delete_secret(ctx: typer.Context, name: Name) -> None:
    """Delete the secret NAME (refused while a job is granted it)."""
    with api_client(ctx) as client:
        client.delete(f"/secrets/{_segment(name)}")
    typer.echo(f"secret {name} deleted")
