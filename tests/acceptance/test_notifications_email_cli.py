"""``longshore notifications --channel email`` against a real ``serve`` configured with
``WORKER_SMTP_*``: the rule is saved and listed from the command line, a ``mailto:`` URL with
a query is one line naming the field, and ``serve``'s own worker mails a queued notification
to a real SMTP server on loopback (``aiosmtpd``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.backends import open_store
from service.notifications.notifier import HANDLER
from service.settings import load_settings
from store.queue.models import NewTask
from tests.acceptance.conftest import Longshore, wait_until
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.smtp_server import MailServer

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

RECIPIENTS = "mailto:ops@example.com,oncall@example.com"


async def enqueue_notification(data_dir: Path) -> None:
    """A ``notify.deliver`` task of rule ``mail-ops``, as a worker's notifier enqueues it."""
    message = {
        "rule": "mail-ops",
        "event": "failed",
        "subject": {"kind": "run", "job": "nightly-report", "status": "failed", "error": "x"},
        "createdAt": "2026-12-07T00:00:00+00:00",
    }
    settings = load_settings({"WORKER_DATA_DIR": str(data_dir)})
    async with open_store(settings, migrate=False) as stores:
        payload = {"rule": "mail-ops", "event": "failed", "message": message}
        await stores.queue.enqueue(NewTask(handler=HANDLER, payload=payload))


def test_an_email_rule_set_from_the_command_line_is_mailed_by_serve(
    longshore: Longshore, tmp_path: Path, store_url: str | None
) -> None:
    mail = MailServer.reserve().start()
    port = free_port()
    api = {
        "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
        "WORKER_ADMIN_TOKEN": "root:adm1n-0123456789-abcdefgh",
        "WORKER_ADMIN_ROLES": "root=admin",
        "WORKER_SMTP_URL": mail.url(),
        "WORKER_SMTP_FROM": "longshore@example.com",
        "WORKER_POLL_INTERVAL_SECONDS": "0.2",
    }
    longshore.env.update(api)
    serve = start_serve(longshore, "serve", api)
    try:
        wait_listening(serve, port)
        saved = longshore.ok(
            "notifications", "set", "mail-ops", "--scope", "job", "--target", "nightly-report",
            "--event", "failed", "--channel", "email", "--url", RECIPIENTS,
            "--template", "{job} {event}",
        )  # fmt: skip
        assert "mail-ops saved" in saved
        shown = longshore.json("notifications", "show", "mail-ops")
        assert (shown["channel"], shown["url"], shown["secretSet"]) == ("email", RECIPIENTS, False)
        assert " email " in longshore.ok("notifications", "list")
        refused = longshore.run(
            "notifications", "set", "bad", "--event", "failed", "--channel", "email",
            "--url", "mailto:ops@example.com?subject=hi",
        )  # fmt: skip
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert "url: only addresses" in line

        asyncio.run(enqueue_notification(Path(longshore.env["WORKER_DATA_DIR"])))
        wait_until(lambda: len(mail.received) == 1, "the mail", timeout=30)
        [received] = mail.received
        assert received.rcpt_tos == ("ops@example.com", "oncall@example.com")
        assert received.message["Subject"] == "Longshore: failed of job nightly-report"
        assert received.body.startswith("nightly-report failed\n")
    finally:
        mail.stop()
        stop(serve)
