"""The ``email`` channel end to end: rules saved over the admin API, deliveries through the
durable queue on a real worker, mails received by a real SMTP server on loopback
(``aiosmtpd``) over real TLS (a throwaway CA), with real AUTH."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from service.errors import DeliveryFailed
from service.notifications.mail import Mailer, SmtpServer
from service.notifications.notifier import HANDLER
from store.notifications.models import Channel, NotificationRule, RuleEvent, RuleScope
from store.queue.models import NewTask, TaskState
from store.queue.retry import RetryPolicy
from tests.integration.admin_harness import ADMIN, VIEWER, FullAdmin, full_admin
from tests.integration.smtp_server import MailServer
from tests.integration.test_admin_console import ROOT, sign_in
from tests.integration.test_notifications import (
    events_of,
    notifying_admin,
    queue_idle,
    run_job,
    save_rule,
    until,
    working,
)

embedded = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""The channel does not depend on the backend: its tests run on the embedded store."""

PASSWORD = "smtp-pa55word-never-shown"
SENDER = "longshore@example.com"
RECIPIENTS = "mailto:ops@example.com,oncall@example.com"
EVIL = "\r\nBcc: evil@x.example"
MAILED: dict[str, Any] = {"config": {"smtp_configured": True}, "notify_retry_seconds": 0.2}
"""The harness makes its AdminConfig apart from the settings: it is told SMTP is there."""


def smtp_settings(server: MailServer, tmp_path: Path, **more: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"smtp_url": server.url(), "smtp_from": SENDER}
    if server.tls is not None:
        settings["smtp_ca_file"] = server.write_ca(tmp_path / f"smtp-ca-{server.port}.pem")
    return {**settings, **more}


def email_rule(name: str = "mail-ops", **fields: Any) -> dict[str, Any]:
    rule = {
        "scope": "job",
        "target": "flaky",
        "events": ["failed"],
        "channel": "email",
        "url": RECIPIENTS,
    }
    return {**rule, **fields}


async def deliver_crafted(admin: FullAdmin, rule: str, message: dict[str, Any]) -> int:
    """Enqueue one ``notify.deliver`` task carrying ``message`` (as the notifier would),
    attempted twice; wait until it is done or dead-lettered."""
    task = NewTask(
        handler=HANDLER,
        payload={"rule": rule, "event": "failed", "message": message},
        retry=RetryPolicy(max_attempts=2, base_delay=0.2, jitter=0.0),
    )
    queue = admin.runtime.stores.queue
    task_id = (await queue.enqueue(task)).task.id

    async def settled() -> bool:
        found = await queue.get_task(task_id)  # a done task without a key is gone
        return found is None or found.state in (TaskState.DONE, TaskState.DEAD)

    async with working(admin):
        await until(settled, "the delivery to settle", timeout=30)
    return task_id


def crafted_message(job: str, error: str) -> dict[str, Any]:
    return {
        "rule": "mail-ops",
        "event": "failed",
        "subject": {"kind": "run", "job": job, "status": "failed", "error": error},
        "createdAt": "2026-12-07T00:00:00+00:00",
    }


@embedded
@pytest.mark.docker
@pytest.mark.slow
async def test_a_failed_run_is_mailed_over_starttls_after_login(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    server = MailServer.reserve(tls="starttls", login=("longshore", PASSWORD)).start()
    password_file = tmp_path / "smtp-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    settings = smtp_settings(
        server, tmp_path, smtp_username="longshore", smtp_password_file=password_file
    )
    try:
        async with notifying_admin(backend, queue_location, tmp_path, **MAILED, **settings) as a:
            assert (await a.client.get("/metrics", headers=VIEWER)).status_code == 200
            shown = await save_rule(a, "mail-ops", **email_rule(template="{job} {event}: {status}"))
            assert (shown["channel"], shown["url"], shown["secretSet"]) == (
                "email",
                RECIPIENTS,
                False,
            )
            async with working(a):
                await run_job(a, "ok")
                assert server.received == []
                await run_job(a, "fail")

            [mail] = server.received
            assert mail.login == "longshore"  # AUTH, after STARTTLS (the server requires both)
            assert mail.mail_from == SENDER
            assert mail.rcpt_tos == ("ops@example.com", "oncall@example.com")
            message = mail.message
            assert message["From"] == SENDER
            assert message["To"] == "ops@example.com, oncall@example.com"
            assert message["Subject"] == "Longshore: failed of job flaky"
            assert message["Auto-Submitted"] == "auto-generated"
            assert message["Message-ID"].endswith("@example.com>")
            assert message["X-Longshore-Event"] == "failed"
            body = mail.body
            assert body.startswith("flaky failed: failed\n")
            assert "exitCode: 3" in body

            [delivered] = await events_of(a, "NotificationDelivered")
            assert delivered.key == "flaky"
            assert delivered.data["channel"] == "email"
            assert delivered.data["host"] == f"127.0.0.1:{server.port}"
            metrics = (await a.client.get("/metrics/prometheus", headers=VIEWER)).text
            assert 'longshore_notifications_total{outcome="delivered"} 1.0' in metrics
            assert PASSWORD not in str(delivered.data) + str(await a.audit_entries(limit=100))

            # The console offers the channel.
            await sign_in(a, "alice")
            form = await a.client.get(f"{ROOT}/notifications/new")
            assert '<option value="email">email</option>' in form.text
    finally:
        server.stop()


@embedded
@pytest.mark.docker
@pytest.mark.slow
async def test_a_server_that_is_down_gets_the_mail_later(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    server = MailServer.reserve(tls="smtps")  # nothing listens yet
    try:
        async with notifying_admin(
            backend, queue_location, tmp_path, **MAILED, **smtp_settings(server, tmp_path)
        ) as admin:
            await save_rule(admin, "mail-ops", **email_rule())
            job = (await admin.client.get("/jobs/flaky", headers=VIEWER)).json()["job"]
            keys = ("name", "source", "tarballPath", "tarballSha256")
            definition = {**{key: job[key] for key in keys}, "env": ["MODE=fail"]}
            assert (await admin.client.post("/jobs", json=definition, headers=ADMIN)).is_success
            async with working(admin):
                await admin.client.post("/jobs/flaky/run", headers=ADMIN)

                async def failed_once() -> bool:
                    return bool(await events_of(admin, "NotificationFailed"))

                await until(failed_once, "a failed delivery")
                server.start()
                await until(lambda: len(server.received) == 1, "the mail, retried")
                await until(lambda: queue_idle(admin), "the queue")
            [failed, *_] = await events_of(admin, "NotificationFailed")
            assert "connection refused" in failed.data["error"]
            assert len(server.received) == 1
            assert server.received[0].message["Subject"] == "Longshore: failed of job flaky"
            assert len(await events_of(admin, "NotificationDelivered")) == 1
    finally:
        server.stop()


@embedded
async def test_untrusted_text_in_a_notification_adds_no_header(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    server = MailServer.reserve().start()  # plain SMTP, allowed to loopback
    try:
        settings = smtp_settings(server, tmp_path, notify_retry_seconds=0.2)
        async with full_admin(
            backend, queue_location, tmp_path, settings=settings, smtp_configured=True
        ) as admin:
            await save_rule(admin, "mail-ops", **email_rule(template="{job}: {error}"))
            message = crafted_message(f"nightly{EVIL}", f"boom{EVIL}\r\n\r\nforged body")
            await deliver_crafted(admin, "mail-ops", message)
    finally:
        server.stop()
    [mail] = server.received
    assert mail.rcpt_tos == ("ops@example.com", "oncall@example.com")  # no evil@x.example
    received = mail.message
    assert received["Bcc"] is None
    assert "evil" not in str(received["To"])
    head = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head
    assert "\n" not in received["Subject"]
    assert "Bcc: evil" in received["Subject"]
    assert mail.body.startswith("nightly  Bcc: evil@x.example: boom  Bcc: ")


@embedded
async def test_a_certificate_for_another_host_is_refused_and_the_delivery_retried(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    server = MailServer.reserve(tls="smtps", names=("mail.example.test",)).start()
    try:
        settings = smtp_settings(server, tmp_path, notify_retry_seconds=0.2)
        async with full_admin(
            backend, queue_location, tmp_path, settings=settings, smtp_configured=True
        ) as admin:
            await save_rule(admin, "mail-ops", **email_rule())
            task_id = await deliver_crafted(admin, "mail-ops", crafted_message("flaky", ""))
            task = await admin.runtime.stores.queue.get_task(task_id)
            assert task is not None
            assert (task.state, task.attempts) == (TaskState.DEAD, 2)  # retried, then dead
            [failed] = await events_of(admin, "NotificationFailed")
            [dead] = await events_of(admin, "NotificationDeadLettered")
            for event in (failed, dead):
                assert "TLS certificate refused" in event.data["error"]
                assert "not valid for '127.0.0.1'" in event.data["error"]
    finally:
        server.stop()
    assert server.received == []


@embedded
async def test_without_smtp_an_email_rule_is_refused_and_a_stored_one_fails_clearly(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    settings = {"notify_retry_seconds": 0.2}
    async with full_admin(backend, queue_location, tmp_path, settings=settings) as admin:
        put = "/notifications/rules/mail-ops"
        refused = await admin.client.put(put, json=email_rule(), headers=ADMIN)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["message"].startswith("channel: email needs an SMTP")
        assert (await admin.client.get(put, headers=VIEWER)).status_code == 404
        bad = email_rule(enabled=False, url="mailto:ops@example.com?bcc=evil@x.example")
        response = await admin.client.put(put, json=bad, headers=ADMIN)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("url: only addresses")
        kept = await admin.client.put(put, json=email_rule(enabled=False), headers=ADMIN)
        assert kept.status_code == 201, kept.text  # a disabled rule may be kept

        # A rule saved while SMTP was configured, delivered after it was not.
        rule = NotificationRule(
            name="mail-ops",
            scope=RuleScope.GLOBAL,
            events=(RuleEvent.FAILED,),
            channel=Channel.EMAIL,
            url=RECIPIENTS,
        )
        await admin.runtime.stores.notifications.upsert(rule)
        await deliver_crafted(admin, "mail-ops", crafted_message("flaky", ""))
        [failed] = await events_of(admin, "NotificationFailed")
        [dead] = await events_of(admin, "NotificationDeadLettered")
        assert "no SMTP server is configured (WORKER_SMTP_URL" in dead.data["error"]
        assert failed.data["attempt"] == 1
        assert dead.data["attempt"] == 2


def mailer_to(server: MailServer, tmp_path: Path, **fields: Any) -> Mailer:
    return Mailer(
        SmtpServer(
            scheme={"starttls": "smtp+starttls", "smtps": "smtps", None: "smtp"}[server.tls],
            host="127.0.0.1",
            port=server.port,
            sender=SENDER,
            ca_file=server.write_ca(tmp_path / f"ca-{server.port}.pem"),
            **fields,
        )
    )


def rule_of(**fields: Any) -> NotificationRule:
    return NotificationRule(
        name="mail-ops",
        scope=RuleScope.GLOBAL,
        events=(RuleEvent.FAILED,),
        channel=Channel.EMAIL,
        url=RECIPIENTS,
        **fields,
    )


async def test_a_refusal_a_wrong_password_and_a_silent_server_fail_with_short_errors(
    tmp_path: Path,
) -> None:
    message = crafted_message("flaky", "")
    server = MailServer.reserve(tls="starttls", login=("longshore", PASSWORD)).start()
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password")
    wrong.chmod(0o600)
    try:
        mailer = mailer_to(server, tmp_path, username="longshore", password_file=wrong)
        with pytest.raises(DeliveryFailed) as caught:
            await mailer.send(rule_of(), message, task_id=1)
        assert "answered SMTP 535 (SMTPAuthenticationError)" in str(caught.value)
        assert "not-the-password" not in str(caught.value)

        right = tmp_path / "password"
        right.write_text(PASSWORD)
        right.chmod(0o600)
        server.data_answer = "554 5.7.1 rejected"
        mailer = mailer_to(server, tmp_path, username="longshore", password_file=right)
        with pytest.raises(DeliveryFailed, match=r"answered SMTP 554 \(SMTPDataError\)"):
            await mailer.send(rule_of(), message, task_id=1)
        server.data_answer = None
        await mailer.send(rule_of(), message, task_id=1)
        assert len(server.received) == 1
    finally:
        server.stop()

    # A server that accepts the connection and never speaks: the rule's timeout ends it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = int(silent.getsockname()[1])
        mailer = Mailer(SmtpServer(scheme="smtp", host="127.0.0.1", port=port, sender=SENDER))
        started = asyncio.get_running_loop().time()
        with pytest.raises(DeliveryFailed) as timed_out:
            await mailer.send(rule_of(timeout_seconds=0.3), message, task_id=1)
        assert "Timeout" in str(timed_out.value)
        assert asyncio.get_running_loop().time() - started < 5
