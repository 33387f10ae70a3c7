"""The ``email`` channel: one mail per notification, through the operator's SMTP server.

The server is operator configuration (``WORKER_SMTP_*``, :class:`SmtpServer`), never a
rule's: a rule names only its recipients (``mailto:a@example.com,b@example.com``, checked by
:mod:`store.notifications.mailto`). The connection:

- ``smtp://host:port`` is plain SMTP, allowed to a loopback host only (a local relay);
- ``smtp+starttls://host:587`` upgrades with STARTTLS (required: a server that does not offer
  it fails the delivery), ``smtps://host:465`` speaks TLS from the first byte;
- TLS always verifies the certificate and the host name, against the system's trust plus
  ``WORKER_SMTP_CA_FILE`` when set; TLS 1.2 at least;
- ``WORKER_SMTP_USERNAME`` logs in with the password read from ``WORKER_SMTP_PASSWORD_FILE``
  (re-read at each delivery, so a rotated file is used without a restart; never logged);
- the whole exchange gives up after the rule's ``timeoutSeconds``.

The mail (:func:`build_message`) is an :class:`email.message.EmailMessage` under
``email.policy.SMTP``: untrusted text (job and schedule names, errors, run output) reaches it
only as the value of a header the header API encodes (a CR or LF in it is replaced first, and
the API refuses one anyway) or as the body, so it can never add a header or a recipient. It
carries ``Auto-Submitted: auto-generated`` (RFC 3834: no auto-replies), a ``Message-ID``, and
the ``X-Longshore-Event`` / ``X-Longshore-Delivery`` headers of the other channels.

Any failure (connection refused, a 4xx or 5xx reply, TLS refused, a timeout, an unreadable
password file) raises :class:`~service.errors.DeliveryFailed` with a short message (never the
password), retried and dead-lettered like a webhook's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib

from service.errors import DeliveryFailed
from service.notifications import messages
from store.notifications.mailto import parse_mailto
from store.notifications.models import NotificationRule

__all__ = ["SCHEMES", "Mailer", "SmtpServer", "build_message", "parse_smtp_url", "read_password"]

SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
"""The schemes of ``WORKER_SMTP_URL`` and their default ports."""
logger = logging.getLogger(__name__)

MAX_PASSWORD_BYTES = 4096
MAX_SUBJECT_NAME = 200
_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, kw_only=True)
class SmtpServer:
    """Where and how mail is sent (``WORKER_SMTP_*``); the password stays in its file."""

    scheme: str
    host: str
    port: int
    sender: str
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None

    @property
    def where(self) -> str:
        """``host:port``, as errors and events name the server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_smtp_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``WORKER_SMTP_URL``; raises :class:`ValueError`."""
    url = url.strip()
    if any(not 33 <= ord(char) <= 126 for char in url):
        raise ValueError("must be printable ASCII, without spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError("must be smtp://, smtp+starttls:// or smtps://host[:port]")
    try:
        port = SCHEMES[scheme] if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError("the port is not a number from 1 to 65535")
    host = parts.hostname or ""
    if not host:
        raise ValueError("names no host")
    if "@" in parts.netloc:
        raise ValueError("must not carry credentials (use WORKER_SMTP_USERNAME and _PASSWORD_FILE)")
    if not _valid_host(host):
        raise ValueError(f"{host!r} is not a host name (like mail.example.com) nor an IP address")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme://host[:port] only")
    if scheme == "smtp" and not _loopback(host):
        raise ValueError(
            "plain smtp:// is allowed to a loopback host only: use smtp+starttls:// or smtps://"
        )
    return scheme, host, port


def _valid_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        return (
            len(host) <= 253
            and all(_HOST_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit()
        )
    return not getattr(address, "scope_id", None)  # no IPv6 zone (fe80::1%eth0)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_password(path: Path) -> str:
    """The password in ``path`` (one line; a trailing newline is dropped). Raises
    :class:`ValueError` for a file group or others may access, that is not a regular file,
    is empty or too long — its message names the file, never what it holds."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(
                f"{path} may be read by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                "make it 0600"
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ValueError(f"{path} holds more than {MAX_PASSWORD_BYTES} bytes")
    try:
        password = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not password or "\n" in password or "\r" in password:
        raise ValueError(f"{path} must hold the password on one line")
    return password


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trust (plus ``ca_file``), certificate and host name always verified."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _subject_line(message: Mapping[str, Any]) -> str:
    fields = messages.template_fields(message)
    subject = message.get("subject")
    kind = subject.get("kind") if isinstance(subject, Mapping) else None
    event = fields.get("event") or "notification"
    if kind == "test":
        about = f"rule {fields.get('rule', '?')[:MAX_SUBJECT_NAME]}"
    elif kind == "firing" and fields.get("schedule"):
        about = f"schedule {fields['schedule'][:MAX_SUBJECT_NAME]}"
    else:
        about = f"job {(fields.get('job') or '?')[:MAX_SUBJECT_NAME]}"
    return f"Longshore: {event} of {about}"


def _details(message: Mapping[str, Any]) -> str:
    subject = message.get("subject")
    if not isinstance(subject, Mapping):
        return ""
    fields = messages.template_fields(message)
    lines = [f"{key}: {fields[str(key)]}" for key in subject if fields.get(str(key))]
    return "\n".join(lines)


def build_message(
    rule: NotificationRule, message: Mapping[str, Any], *, sender: str, task_id: int
) -> EmailMessage:
    """The mail of one notification: the rule's template as the body's first paragraph, the
    message's fields after it. Every header value is one line of printable text."""
    mail = EmailMessage(policy=SMTP)
    domain = sender.rpartition("@")[2]
    mail["From"] = sender
    mail["To"] = ", ".join(parse_mailto(rule.url))
    mail["Subject"] = _one_line(_subject_line(message))
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = make_msgid("longshore", domain=domain)
    mail["Auto-Submitted"] = "auto-generated"
    mail[messages.EVENT_HEADER] = _one_line(str(message.get("event", "")))[:100]
    mail[messages.DELIVERY_HEADER] = str(task_id)
    body = messages.render(rule.template, message)
    details = _details(message)
    mail.set_content(f"{body}\n\n{details}\n" if details else f"{body}\n", cte="quoted-printable")
    return mail


def _one_line(text: str) -> str:
    return "".join(char if char.isprintable() else " " for char in text).strip()


class Mailer:
    """Sends the mails of ``email`` rules to one :class:`SmtpServer` (see the module
    docstring). The TLS context is made once, when the mailer is."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self._tls = None if server.scheme == "smtp" else tls_context(server.ca_file)
        self._local_hostname = socket.gethostname() or "localhost"

    async def send(
        self, rule: NotificationRule, message: Mapping[str, Any], *, task_id: int
    ) -> None:
        """Send the mail of ``message`` (every recipient accepted, the data answered 250)."""
        server = self.server
        try:
            recipients = list(parse_mailto(rule.url))
            mail = build_message(rule, message, sender=server.sender, task_id=task_id)
        except ValueError as exc:  # a rule saved before a check, or a header refused
            raise DeliveryFailed(f"the mail cannot be made: {exc}") from None
        password = None
        if server.username is not None and server.password_file is not None:
            try:
                password = await asyncio.to_thread(read_password, server.password_file)
            except ValueError as exc:
                raise DeliveryFailed(f"WORKER_SMTP_PASSWORD_FILE: {exc}") from None
        try:
            async with asyncio.timeout(rule.timeout_seconds):
                refused, _ = await aiosmtplib.send(
                    mail,
                    sender=server.sender,  # the envelope is never read from the headers
                    recipients=recipients,
                    hostname=server.host,
                    port=server.port,
                    username=server.username if password is not None else None,
                    password=password,
                    use_tls=server.scheme == "smtps",
                    start_tls=server.scheme == "smtp+starttls",
                    tls_context=self._tls,
                    timeout=rule.timeout_seconds,
                    local_hostname=self._local_hostname,
                )
        except aiosmtplib.SMTPRecipientsRefused:
            raise DeliveryFailed(f"{server.where} refused every recipient") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                f"{server.where} answered SMTP {exc.code} ({type(exc).__name__})"
            ) from None
        except (aiosmtplib.SMTPException, TimeoutError, OSError, ValueError) as exc:
            raise DeliveryFailed(f"{server.where}: {_reason(exc)}") from None
        if refused:  # some recipients were refused, the others got it: not retried
            logger.warning(
                "mail recipients refused",
                extra={"rule": rule.name, "refused": len(refused), "server": server.where},
            )


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: the TLS verdict when a certificate was refused, that
    STARTTLS or AUTH is not offered, else the error's kind (never the server's text)."""
    if isinstance(exc, aiosmtplib.SMTPException) and not isinstance(
        exc, aiosmtplib.SMTPResponseException
    ):
        for extension in ("STARTTLS", "AUTH"):  # aiosmtplib's own words, not the server's
            if f"{extension} extension" in exc.message and "not supported" in exc.message:
                return f"the server does not offer {extension}: nothing was sent"
    seen: BaseException | None = exc
    for _ in range(10):  # the chain is short; never follow a long (or looping) one
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate refused ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return f"TLS failed ({seen.reason or type(seen).__name__})"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__
