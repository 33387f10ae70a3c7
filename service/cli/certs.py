"""``longshore certs init``: development certificates for the admin API's mTLS.

Creates a CA, a server certificate for the listen host(s) and client certificates (one per
``--client CN[:role]``), with the ``cryptography`` library, and prints the environment lines
that use them. Keys are written with mode 0600. For development and small private setups:
a production deployment should use its own PKI.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from admin.config import Role
from service.cli.common import command_group
from service.errors import ServiceError

app = command_group("Development certificates for the admin API (mTLS).")

DEFAULT_DIR = Path("longshore-certs")
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_CLIENT = "admin:admin"
_CN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Client:
    cn: str
    role: Role | None


def parse_client(text: str) -> Client:
    """``CN`` or ``CN:role``; the CN is also a file name and a WORKER_ADMIN_ROLES key."""
    cn, sep, role = text.strip().partition(":")
    if not _CN.fullmatch(cn):
        raise ServiceError(
            f"--client {text!r}: the CN must be 1-64 letters, digits, '.', '_' or '-'"
        )
    try:
        return Client(cn=cn, role=Role.parse(role) if sep else None)
    except ValueError as exc:
        raise ServiceError(f"--client {text!r}: {exc}") from None


@app.command("init")
def init(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write the certificates and keys.")
    ] = DEFAULT_DIR,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A DNS name or IP address of the server (repeatable; default: localhost, "
            "127.0.0.1, ::1).",
        ),
    ] = None,
    clients: Annotated[
        list[str] | None,
        typer.Option(
            "--client",
            help="A client certificate CN, optionally with its role: CN[:viewer|operator|"
            "admin] (repeatable; default: 'admin:admin'; a client without a role gets "
            "WORKER_ADMIN_DEFAULT_ROLE, default viewer).",
        ),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", min=1, max=3650, help="Validity of server/client certs.")
    ] = 365,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create a development CA, a server certificate and client certificates, and print
    the WORKER_ADMIN_* lines that use them (the lines are shell: `eval "$(...)"` works)."""
    names = list(hosts or DEFAULT_HOSTS)
    for host in names:
        _check_host(host)
    wanted = [parse_client(text) for text in (clients or [DEFAULT_CLIENT])]
    cns = [client.cn for client in wanted]
    if len(set(cns)) != len(cns):
        raise ServiceError("--client: each CN may be given once")

    directory = directory.resolve()
    files = {
        "ca": directory / "ca.pem",
        "ca-key": directory / "ca-key.pem",
        "server": directory / "server.pem",
        "server-key": directory / "server-key.pem",
    }
    for cn in cns:
        files[f"client-{cn}"] = directory / f"client-{cn}.pem"
        files[f"client-{cn}-key"] = directory / f"client-{cn}-key.pem"
    existing = [str(path) for path in files.values() if path.exists() or path.is_symlink()]
    if existing and not force:
        raise ServiceError(
            f"refusing to overwrite {', '.join(existing)} (use --force to replace them)"
        )
    directory.mkdir(parents=True, exist_ok=True)

    # cryptography is imported by this command only, not when ``longshore`` starts.
    from service.cli.certs_pki import write_certificates

    write_certificates(files, names, cns, days=days, force=force)

    _print_usage(directory, files, names, wanted)


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if not re.fullmatch(r"(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", host):
        raise ServiceError(f"--host {host!r}: not a DNS name or an IP address")


def _print_usage(
    directory: Path, files: dict[str, Path], hosts: list[str], clients: list[Client]
) -> None:
    q = shlex.quote
    roles = ",".join(f"{c.cn}={c.role.label}" for c in clients if c.role is not None)
    first = clients[0].cn
    host = hosts[0]
    url_host = f"[{host}]" if ":" in host else host
    url = f"https://{url_host}:8081/admin/v1/health"
    cert, key, ca = files[f"client-{first}"], files[f"client-{first}-key"], files["ca"]
    lines = [
        f"# Development CA, server and client certificates written to {directory}",
        f"# server certificate for: {', '.join(hosts)}",
        f"# client certificates: {', '.join(c.cn for c in clients)} (keys are mode 0600)",
        "# Serve the admin API over mTLS with:",
        f"export WORKER_ADMIN_TLS_CERT={q(str(files['server']))}",
        f"export WORKER_ADMIN_TLS_KEY={q(str(files['server-key']))}",
        f"export WORKER_ADMIN_TLS_CA={q(str(files['ca']))}",
    ]
    if roles:
        lines.append(f"export WORKER_ADMIN_ROLES={q(roles)}")
    lines += [
        "# (clients without a role get WORKER_ADMIN_DEFAULT_ROLE, default viewer)",
        "# To listen beyond loopback, e.g.: export WORKER_ADMIN_HTTP_ADDR=0.0.0.0:8081",
        f"# Then, as client {first!r}:",
        f"#   curl --cacert {q(str(ca))} --cert {q(str(cert))} --key {q(str(key))} {url}",
        "#   python -c 'import ssl, httpx; "
        f'c = ssl.create_default_context(cafile="{ca}"); '
        f'c.load_cert_chain("{cert}", "{key}"); '
        f'print(httpx.get("{url}", verify=c).json())\'',
    ]
    typer.echo("\n".join(lines))
