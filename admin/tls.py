"""mTLS for the admin listener: uvicorn with a client certificate required, and the peer
certificate handed to the app (DESIGN §3).

uvicorn does not put the client certificate in the ASGI scope (its pull request for the
ASGI TLS extension is still open), so :class:`ClientCertH11Protocol` - uvicorn's h11
protocol with a per-connection wrapper around the app - reads it once the handshake is done
and adds ``scope["extensions"]["tls"]`` to every request of that connection:

- ``client_cert``: the verified peer certificate as ``SSLSocket.getpeercert()`` returns it
  (``subject``, ``issuer``, ``notAfter``, ...); :mod:`admin.auth` takes the subject CN;
- ``client_cert_chain``: the peer certificate as PEM (a one-element list);
- ``tls_version`` and ``cipher_suite``: as the ASGI TLS extension names them (text here).

With ``ssl_cert_reqs=CERT_REQUIRED`` a client without a certificate signed by the CA never
gets past the handshake, so a request never reaches the app without one.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from admin.http_protocol import HeaderDeadlineH11Protocol


def _tls_info(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return {
        "client_cert": ssl_object.getpeercert(),
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_error": None,
        "server_cert": None,
        "tls_version": ssl_object.version(),
        "cipher_suite": cipher[0] if cipher else None,
    }


class _WithTLS:
    """Adds one connection's TLS information to each of its requests' scope."""

    def __init__(self, app: ASGIApp, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.tls}
        await self.app(scope, receive, send)


class ClientCertH11Protocol(HeaderDeadlineH11Protocol):
    """uvicorn's h11 protocol (with the header deadline of
    :class:`~admin.http_protocol.HeaderDeadlineH11Protocol`) that exposes the client
    certificate to the app (pass the
    class as ``uvicorn.Config(http=...)``). One protocol object per connection, so the
    wrapped app is per connection too."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = _tls_info(transport)
        if tls is not None:
            self.app = _WithTLS(self.app, tls)


def mtls_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    certfile: Path,
    keyfile: Path,
    ca_file: Path,
    **options: Any,
) -> uvicorn.Config:
    """A uvicorn config serving ``app`` over HTTPS that requires a client certificate
    signed by ``ca_file`` (mTLS); plaintext connections fail the handshake."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
        ssl_ca_certs=str(ca_file),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        http=ClientCertH11Protocol,
        **options,
    )
