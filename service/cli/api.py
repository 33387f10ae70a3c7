"""How client commands reach the admin API: the address, the credentials, one request.

The client reads the same settings as the service, so on the machine that runs ``serve`` a
client command needs no flags:

- the URL is ``--url``, else ``WORKER_ADMIN_URL``, else built from
  ``WORKER_ADMIN_HTTP_ADDR`` (``https`` when ``WORKER_ADMIN_TLS_*`` are set; a wildcard
  listen address is reached on loopback);
- with mTLS, the client certificate and key are ``--cert``/``--key`` or
  ``WORKER_ADMIN_CLIENT_CERT``/``WORKER_ADMIN_CLIENT_KEY``, and the server is verified
  against ``--ca``, else ``WORKER_ADMIN_CLIENT_CA``, else ``WORKER_ADMIN_TLS_CA``;
- otherwise a bearer token: ``--token``, else ``WORKER_ADMIN_TOKEN`` (its first token, when
  it lists ``name:secret`` pairs), else the token file ``serve`` wrote in the data dir;
- ``WORKER_ADMIN_APPROVAL_TOKEN``, when set, is sent as ``X-Admin-Approval``.

Every failure becomes one :class:`ApiError` line: the API's own error message when it sent
the envelope, else what went wrong on the way (refused connection, TLS, timeout).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from admin.config import parse_tokens
from service.addresses import format_host_port
from service.api_token import TOKEN_FILE
from service.errors import ServiceError
from service.logs import configure_logging

if TYPE_CHECKING:
    # httpx (which loads rich and pygments) and the settings (pydantic) are imported when a
    # command talks to the API, not when ``longshore`` starts (``--help`` needs neither).
    import ssl

    import httpx

    from service.settings import Settings

BASE_PATH = "/admin/v1"

# Timeouts in seconds: connecting, and every other step (reading, writing, the pool).
TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Admin API URL (default: WORKER_ADMIN_URL, else the local one).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Bearer token (default: WORKER_ADMIN_TOKEN or the data dir's).",
        show_default=False,
    ),
]
CertOption = Annotated[
    Path | None,
    typer.Option(
        "--cert",
        help="Client certificate for mTLS (default: WORKER_ADMIN_CLIENT_CERT).",
        show_default=False,
    ),
]
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key", help="Client key for mTLS (default: WORKER_ADMIN_CLIENT_KEY).", show_default=False
    ),
]
CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        help="CA that signed the server (default: WORKER_ADMIN_CLIENT_CA or WORKER_ADMIN_TLS_CA).",
        show_default=False,
    ),
]


class ApiError(ServiceError):
    """A client command failed; the message is the one line to show."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, kw_only=True)
class Connection:
    """Where the API is and how to authenticate to it."""

    url: str
    token: str | None = None
    cert: tuple[Path, Path] | None = None
    ca: Path | None = None

    @property
    def base(self) -> str:
        return self.url.rstrip("/") + BASE_PATH


@dataclass(frozen=True, kw_only=True)
class ConnectionFlags:
    url: str | None = None
    token: str | None = None
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


def resolve_connection(flags: ConnectionFlags, settings: Settings | None = None) -> Connection:
    """The connection from flags, then settings (see the module docstring)."""
    if settings is None:
        from service.settings import load_settings

        settings = load_settings()
    cert_file = flags.cert or settings.admin_client_cert
    key_file = flags.key or settings.admin_client_key
    if (cert_file is None) != (key_file is None):
        raise ApiError("a client certificate needs its key: give both --cert and --key")
    tls = settings.admin_tls is not None
    url = flags.url or settings.admin_url
    if url is None:
        host, port = settings.admin_listen
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reaching a wildcard listener locally
            host = "127.0.0.1"
        url = f"{'https' if tls else 'http'}://{format_host_port(host, port)}"
    if not url.startswith(("http://", "https://")):
        raise ApiError(f"--url {url!r}: must start with http:// or https://")
    ca = flags.ca or settings.admin_client_ca or settings.admin_tls_ca
    cert = (cert_file, key_file) if cert_file is not None and key_file is not None else None
    token = flags.token
    if token is None and cert is None:
        token = _settings_token(settings)
    return Connection(url=url, token=token, cert=cert, ca=ca)


def _settings_token(settings: Settings) -> str | None:
    if settings.admin_token is not None:
        tokens = parse_tokens(settings.admin_token.get_secret_value())
        return next(iter(tokens.values()), None)
    path = settings.data_dir / TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _ssl_context(connection: Connection) -> ssl.SSLContext | bool:
    if not connection.url.startswith("https://"):
        return True
    import ssl

    try:
        context = ssl.create_default_context(
            cafile=str(connection.ca) if connection.ca is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if connection.cert is not None:
            certfile, keyfile = connection.cert
            context.load_cert_chain(str(certfile), str(keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise ApiError(f"TLS settings: {exc}") from None
    return context


class ApiClient:
    """A synchronous client of the admin API (the CLI makes one call at a time)."""

    def __init__(self, connection: Connection, *, approval: str | None = None) -> None:
        import httpx

        self.connection = connection
        headers = {"Accept": "application/json"}
        if connection.token is not None:
            headers["Authorization"] = f"Bearer {connection.token}"
        if approval is not None:
            headers["X-Admin-Approval"] = approval
        self._http = httpx.Client(
            base_url=connection.base,
            headers=headers,
            verify=_ssl_context(connection),
            timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """One JSON call; returns the decoded body (``None`` for an empty one)."""
        import httpx

        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path, params=query, json=body if body is not None else None
            )
        except httpx.HTTPError as exc:
            raise ApiError(self._transport_message(exc)) from None
        self._raise_for_status(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{method} {path}: the API sent a body that is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params=params, body=body)

    def put(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("PUT", path, params=params, body=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)

    @contextmanager
    def stream(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Iterator[httpx.Response]:
        """A streamed GET (downloads, SSE); the status is checked before the body is read."""
        import httpx

        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with self._http.stream(
                "GET", path, params=query, timeout=timeout or self._http.timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for_status(response)
                yield response
        except httpx.HTTPError as exc:
            raise ApiError(self._transport_message(exc)) from None

    def _transport_message(self, exc: httpx.HTTPError) -> str:
        import httpx

        where = self.connection.url
        if isinstance(exc, httpx.ConnectError):
            return f"cannot reach the admin API at {where}: {exc}"
        if isinstance(exc, httpx.TimeoutException):
            return f"the admin API at {where} did not answer in time"
        return f"admin API at {where}: {exc}"

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        code: str | None = None
        message = response.reason_phrase or "request failed"
        try:
            error = response.json().get("error", {})
            code = error.get("code")
            message = error.get("message") or message
        except (ValueError, AttributeError):
            pass
        raise ApiError(
            f"{message} (HTTP {response.status_code})", status=response.status_code, code=code
        )


def iter_sse(response: httpx.Response) -> Iterator[tuple[str, str, str | None]]:
    """``(event, data, id)`` for each server-sent event of ``response``."""
    event, event_id = "message", None
    data: list[str] = []
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, event_id = "message", None
            data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


def decode(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


def connection_callback(
    ctx: typer.Context,
    url: UrlOption = None,
    token: TokenOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    ca: CaOption = None,
) -> None:
    """The options every client command group takes (before the subcommand)."""
    ctx.obj = ConnectionFlags(url=url, token=token, cert=cert, key=key, ca=ca)


@contextmanager
def api_client(ctx: typer.Context) -> Iterator[ApiClient]:
    """A client for the group's connection flags, closed afterwards."""
    flags = ctx.obj if isinstance(ctx.obj, ConnectionFlags) else ConnectionFlags()
    with connect(flags) as client:
        yield client


@contextmanager
def connect(flags: ConnectionFlags) -> Iterator[ApiClient]:
    """A client for ``flags`` (then the settings), closed afterwards."""
    from service.settings import load_settings

    settings = load_settings()
    configure_logging("WARNING", settings.log_format)
    with ApiClient(resolve_connection(flags, settings), approval=_approval(settings)) as client:
        yield client


def _approval(settings: Settings) -> str | None:
    token = settings.admin_approval_token
    return token.get_secret_value() if token is not None else None
