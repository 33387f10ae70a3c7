"""The ``email`` channel under attack, with real parts: a real SMTP server on loopback
(``aiosmtpd``, real TLS from a throwaway CA) or a hostile one (a raw socket server), and the
real admin API. Untrusted text never ends the mail's data early, adds a recipient or breaks a
line limit; TLS is never given up; a hostile server is bounded by the rule's timeout; a bad
``mailto:`` is a 400 naming ``url``, audited, nothing stored."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from service.errors import DeliveryFailed
from service.notifications.mail import Mailer, SmtpServer
from store.notifications.models import Channel, NotificationRule, RuleEvent, RuleScope
from tests.integration.admin_harness import ADMIN, VIEWER, full_admin
from tests.integration.smtp_server import MailServer

SENDER = "longshore@example.com"
PASSWORD = "smtp-pa55word-never-sent"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def rule_of(timeout: float = 5.0, template: str = "{job}: {error}") -> NotificationRule:
    return NotificationRule(
        name="mail-ops",
        scope=RuleScope.GLOBAL,
        events=(RuleEvent.FAILED,),
        channel=Channel.EMAIL,
        url="mailto:ops@example.com",
        template=template,
        timeout_seconds=timeout,
    )


def failed(job: str = "flaky", error: str = "boom") -> dict[str, Any]:
    subject = {"kind": "run", "job": job, "status": "failed", "error": error}
    return {"rule": "mail-ops", "event": "failed", "subject": subject}


def plain_mailer(port: int, scheme: str = "smtp", **fields: Any) -> Mailer:
    return Mailer(SmtpServer(scheme=scheme, host="127.0.0.1", port=port, sender=SENDER, **fields))


async def test_lone_dots_and_bare_newlines_never_end_the_data_early() -> None:
    server = MailServer.reserve().start()
    smuggled = "\r\n.\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<evil@x.example>\r\nDATA\r\n"
    long_line = "x" * 3000
    template = (
        f"top\n.\nafter a lone dot{smuggled}bare\rcr\n.\r\n{long_line}\n\u00e9t\u00e9 {{error}}"
    )
    try:
        await plain_mailer(server.port).send(
            rule_of(template=template), failed(error=f"e{smuggled}\n.\ntail"), task_id=1
        )
        await asyncio.sleep(0.2)  # a smuggled second mail would arrive now
    finally:
        server.stop()
    [mail] = server.received
    assert mail.rcpt_tos == ("ops@example.com",)
    assert mail.mail_from == SENDER
    assert all(len(line) <= 998 for line in mail.raw.split(b"\r\n"))
    body = mail.body
    assert body.startswith("top\n.\nafter a lone dot\n.\nMAIL FROM:<evil@x.example>\n")
    assert "x" * 3000 in body
    assert "\u00e9t\u00e9 e" in body
    assert body.rstrip().endswith("tail")


async def test_a_server_without_starttls_gets_nothing_and_the_error_says_why(
    tmp_path: Path,
) -> None:
    server = MailServer.reserve().start()  # plain SMTP only, no STARTTLS offered
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o600)
    mailer = plain_mailer(
        server.port, "smtp+starttls", username="longshore", password_file=password_file
    )
    try:
        with pytest.raises(DeliveryFailed) as caught:
            await mailer.send(rule_of(), failed(), task_id=1)
    finally:
        server.stop()
    assert server.received == []
    assert "does not offer STARTTLS: nothing was sent" in str(caught.value)


async def test_a_login_to_a_server_that_offers_no_auth_fails_saying_so(tmp_path: Path) -> None:
    server = MailServer.reserve().start()  # plain SMTP on loopback, no AUTH offered
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o600)
    mailer = plain_mailer(server.port, username="longshore", password_file=password_file)
    try:
        with pytest.raises(DeliveryFailed) as caught:
            await mailer.send(rule_of(), failed(), task_id=1)
    finally:
        server.stop()
    assert server.received == []
    assert "does not offer AUTH: nothing was sent" in str(caught.value)
    assert PASSWORD not in str(caught.value)


async def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    server = MailServer.reserve(tls="smtps")
    issue = server.ca.issue_cert
    start, end = dt.datetime(2020, 1, 1), dt.datetime(2021, 1, 1)

    def issue_expired(*names: str, **_: Any) -> trustme.LeafCert:
        return issue(*names, not_before=start, not_after=end)

    server.ca.issue_cert = issue_expired  # type: ignore[method-assign]
    server.start()
    mailer = plain_mailer(server.port, "smtps", ca_file=server.write_ca(tmp_path / "ca.pem"))
    try:
        with pytest.raises(DeliveryFailed, match=r"TLS certificate refused \(.*expired\)"):
            await mailer.send(rule_of(), failed(), task_id=1)
    finally:
        server.stop()
    assert server.received == []


async def _flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:  # a multi-line greeting that never ends
        writer.write(b"220-" + b"\x1b[2J\x07" * 20 + b"\r\n")
        await writer.drain()


async def _drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:  # one byte at a time, never a whole reply
        writer.write(b"2")
        await writer.drain()
        await asyncio.sleep(0.05)


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"2x0 \x1b]0;pwned\x07\xff\r\n")
    await writer.drain()
    await reader.read()  # until the client hangs up


@asynccontextmanager
async def hostile(handler: Handler) -> AsyncIterator[int]:
    """A server running ``handler`` for each connection until the client hangs up."""
    running: set[asyncio.Task[Any]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass  # the client hung up: what is awaited here
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        if running:
            await asyncio.wait(running, timeout=5)


@pytest.mark.parametrize("handler", [_flood, _drip, _garbage])
async def test_a_hostile_server_is_bounded_and_its_text_kept_out(handler: Handler) -> None:
    async with hostile(handler) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeliveryFailed) as caught:
            await plain_mailer(port).send(rule_of(timeout=1.0), failed(), task_id=1)
        assert loop.time() - started < 3
    error = str(caught.value)
    assert len(error) < 200
    assert error.isprintable()
    assert "pwned" not in error


ODD_URLS = [
    ("mailto:ops@example.com%0D%0ABcc:evil@x.example", "control"),
    ("mailto:ops@example.com%0d%0a.%0d%0a", "control"),
    ("mailto:ops@example.com%3Fbcc=evil@x.example", "dot-atom"),
    ("mailto:ops@example.com%2Cevil@x.example", "dot-atom"),
    ("mailto:ops@ex\u00e4mple.com", "non-ASCII"),
    ("mailto:" + ",".join(f"u{n}@example.com" for n in range(21)), "at most 20"),
    ("mailto:ops@example.com,OPS@EXAMPLE.COM", "named twice"),
    ("mailto:Ops <ops@example.com>", "spaces or control"),
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_odd_mailto_urls_are_400s_naming_the_url_and_audited(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, smtp_configured=True) as admin:
        for number, (url, says) in enumerate(ODD_URLS):
            rule = {"scope": "global", "events": ["failed"], "channel": "email", "url": url}
            response = await admin.client.put(
                f"/notifications/rules/odd-{number}", json=rule, headers=ADMIN
            )
            assert response.status_code == 400, (url, response.text)
            message = response.json()["error"]["message"]
            assert message.startswith("url: "), message
            assert says in message, message
        listed = await admin.client.get("/notifications/rules", headers=VIEWER)
        assert listed.json() == {"rules": []}
        entries = await admin.audit_entries(limit=50)
        assert len(entries) == len(ODD_URLS)
        assert {(e.action, e.status.value) for e in entries} == {("notification.save", "error")}
