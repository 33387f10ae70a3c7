"""A real SMTP server on loopback for integration tests (``aiosmtpd``, in its own thread).

It speaks plain SMTP, STARTTLS (``tls="starttls"``: required before MAIL and AUTH) or TLS
from the first byte (``tls="smtps"``), with a certificate from a throwaway ``trustme`` CA
issued for ``names`` (``127.0.0.1`` unless told otherwise), and AUTH PLAIN/LOGIN with one
username and password when ``login`` is given (with STARTTLS only: required, after TLS).
Every mail it accepts is kept in :attr:`MailServer.received` (the envelope, the raw bytes and
the parsed message)::

    server = MailServer.reserve(tls="starttls", login=("longshore", "pw")).start()
    ca_file = server.write_ca(tmp_path / "ca.pem")
    ...
    server.stop()
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

__all__ = ["MailServer", "Received"]


@dataclass(frozen=True)
class Received:
    """One mail the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    login: str | None
    """The user that logged in (``None`` without AUTH)."""

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def body(self) -> str:
        """The text of the mail, with plain newlines."""
        return str(self.message.get_content()).replace("\r\n", "\n")


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self._server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._server.data_answer is not None:
            return self._server.data_answer
        login = session.auth_data
        with self._server.lock:
            self._server.received.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=tuple(str(rcpt) for rcpt in envelope.rcpt_tos),
                    raw=bytes(envelope.original_content or envelope.content),
                    login=login.decode() if isinstance(login, bytes) else login,
                )
            )
        return "250 Message accepted for delivery"


class MailServer:
    """See the module docstring."""

    def __init__(
        self,
        port: int,
        *,
        tls: Literal["starttls", "smtps"] | None = None,
        login: tuple[str, str] | None = None,
        names: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        # aiosmtpd warns of AUTH without STARTTLS required (even over smtps): AUTH is tested
        # with STARTTLS only.
        assert login is None or tls == "starttls", "login needs tls='starttls'"
        self.port = port
        self.tls = tls
        self.login = login
        self.ca = trustme.CA()
        self.received: list[Received] = []
        self.data_answer: str | None = None
        """When set, the reply to every mail's data (e.g. ``554 5.7.1 rejected``): nothing
        is kept."""
        self.lock = threading.Lock()
        self._names = names
        self._controller: Controller | None = None

    @classmethod
    def reserve(cls, **options: Any) -> MailServer:
        """A server on a free loopback port, not listening until :meth:`start`."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        return cls(port, **options)

    def write_ca(self, path: Path) -> Path:
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def url(self, scheme: str | None = None, host: str = "127.0.0.1") -> str:
        default = {"starttls": "smtp+starttls", "smtps": "smtps", None: "smtp"}[self.tls]
        return f"{scheme or default}://{host}:{self.port}"

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self.login is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self.login
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    def start(self) -> MailServer:
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(*self._names).configure_cert(context)
        options: dict[str, Any] = {}
        if self.login is not None:
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=True,
            )
        if self.tls == "smtps":
            options["ssl_context"] = context
        elif self.tls == "starttls":
            options.update(tls_context=context, require_starttls=True)
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10, **options
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
