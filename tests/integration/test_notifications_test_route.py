"""``POST /notifications/rules/{name}/test`` over a whole runtime: the test notification goes
through the durable queue to a real worker and a real receiver (a webhook and a chat endpoint
on loopback, a real SMTP server), signed like any other; unknown rules, email without SMTP
and other roles are refused naming the problem, and every attempt is audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.admin_harness import ADMIN, OPERATOR, VIEWER, FullAdmin, full_admin
from tests.integration.smtp_server import MailServer
from tests.integration.test_notifications import events_of, until, working
from tests.integration.webhook_receiver import Receiver

SECRET = "test-route-secret-51c2"
FAST: dict[str, Any] = {"notify_retry_seconds": 0.2, "notify_attempts": 2}


def hook(receiver: Receiver, path: str = "/hook", **fields: Any) -> dict[str, Any]:
    rule = {
        "scope": "job",
        "target": "nightly",
        "events": ["failed"],
        "channel": "webhook",
        "url": receiver.url(path),
        "secret": SECRET,
    }
    return {**rule, **fields}


async def send_test(admin: FullAdmin, name: str) -> str:
    sent = await admin.client.post(f"/notifications/rules/{name}/test", headers=ADMIN)
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert body["rule"] == name
    return str(body["taskId"])


async def task_state(admin: FullAdmin, task_id: str) -> dict[str, Any]:
    shown = await admin.client.get(f"/tasks/{task_id}", headers=VIEWER)
    assert shown.status_code == 200, shown.text
    task: dict[str, Any] = shown.json()["task"]
    return task


async def test_a_disabled_webhook_rule_gets_a_signed_test_delivered_by_the_queue(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    receiver = Receiver.reserve().start()
    try:
        async with full_admin(backend, queue_location, tmp_path, settings=FAST) as admin:
            client = admin.client
            assert (await client.get("/metrics", headers=VIEWER)).status_code == 200
            saved = await client.put(
                "/notifications/rules/ops", json=hook(receiver, enabled=False), headers=ADMIN
            )
            assert saved.status_code == 201, saved.text
            task_id = await send_test(admin, "ops")
            task = await task_state(admin, task_id)
            assert (task["handler"], task["state"]) == ("notify.deliver", "ready")
            async with working(admin):
                await until(lambda: len(receiver.at("/hook")) == 1, "the test delivery")
                await until(
                    lambda: _state_is(admin, task_id, "done"), "the task to be done", timeout=30
                )
            [received] = receiver.at("/hook")
            assert received.signed_by(SECRET)
            assert received.headers["x-longshore-event"] == "test"
            assert received.headers["x-longshore-delivery"] == task_id
            message = received.json()
            assert message["event"] == "test"
            assert message["rule"] == "ops"
            assert message["subject"]["kind"] == "test"
            assert message["subject"]["rule"] == "ops"
            assert SECRET not in received.body.decode()

            [event] = await events_of(admin, "NotificationDelivered")
            assert (event.stream.value, event.key) == ("schedules", "")
            assert (event.data["rule"], event.data["event"], event.data["taskId"]) == (
                "ops",
                "test",
                int(task_id),
            )
            assert event.data["host"] == f"127.0.0.1:{receiver.port}"

            # Each test is a new notification (never deduplicated with the one before).
            again = await send_test(admin, "ops")
            assert again != task_id
            metrics = (await client.get("/metrics/prometheus", headers=VIEWER)).text
            assert 'longshore_notifications_total{outcome="delivered"} 1.0' in metrics
            entries = await admin.audit_entries(limit=50)
            tests = [e for e in entries if e.action == "notification.test"]
            assert [(e.target, e.status.value, e.actor) for e in tests] == [
                ("ops", "ok", "alice"),
                ("ops", "ok", "alice"),
            ]
            assert all(f"taskId={t}" in repr(tests) for t in (task_id, again))
    finally:
        receiver.stop()


async def _state_is(admin: FullAdmin, task_id: str, state: str) -> bool:
    return (await task_state(admin, task_id))["state"] == state


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_chat_rule_gets_the_test_as_text_and_a_failing_receiver_ends_dead(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    receiver = Receiver.reserve()
    receiver.answers["/broken"] = 500
    receiver.start()
    try:
        async with full_admin(backend, queue_location, tmp_path, settings=FAST) as admin:
            chat = hook(receiver, "/chat", channel="chat")
            assert (
                await admin.client.put("/notifications/rules/room", json=chat, headers=ADMIN)
            ).status_code == 201
            broken = hook(receiver, "/broken")
            assert (
                await admin.client.put("/notifications/rules/down", json=broken, headers=ADMIN)
            ).status_code == 201
            chat_task = await send_test(admin, "room")
            broken_task = await send_test(admin, "down")
            async with working(admin):
                await until(
                    lambda: _state_is(admin, broken_task, "dead"), "the dead test", timeout=30
                )
                await until(lambda: _state_is(admin, chat_task, "done"), "the chat test")
            [said] = receiver.at("/chat")
            assert said.signed_by(SECRET)
            assert said.json() == {"text": "Longshore: test of rule room (test notification)"}
            assert len(receiver.at("/broken")) == 2  # retried, then dead-lettered
            dead = await task_state(admin, broken_task)
            assert (
                dead["lastError"] == f"DeliveryFailed: 127.0.0.1:{receiver.port} answered HTTP 500"
            )
    finally:
        receiver.stop()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_email_rule_gets_a_test_mail_through_the_smtp_server(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    server = MailServer.reserve().start()
    settings = {**FAST, "smtp_url": server.url(), "smtp_from": "longshore@example.com"}
    try:
        async with full_admin(
            backend, queue_location, tmp_path, settings=settings, smtp_configured=True
        ) as admin:
            rule = {
                "scope": "global",
                "events": ["failed"],
                "channel": "email",
                "url": "mailto:ops@example.com",
                "enabled": False,
            }
            saved = await admin.client.put(
                "/notifications/rules/mail-ops", json=rule, headers=ADMIN
            )
            assert saved.status_code == 201, saved.text
            task_id = await send_test(admin, "mail-ops")
            async with working(admin):
                await until(lambda: _state_is(admin, task_id, "done"), "the test mail")
            [mail] = server.received
            assert mail.rcpt_tos == ("ops@example.com",)
            assert mail.message["Subject"] == "Longshore: test of rule mail-ops"
            assert mail.message["X-Longshore-Event"] == "test"
            assert mail.body.startswith("Longshore: test of rule mail-ops (test notification)")
            assert "kind: test" in mail.body
    finally:
        server.stop()


async def test_unknown_rules_email_without_smtp_and_other_roles_are_refused_and_audited(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=FAST) as admin:
        client = admin.client
        missing = await client.post("/notifications/rules/nobody/test", headers=ADMIN)
        assert missing.status_code == 404
        assert "notification rule 'nobody' not found" in missing.text
        mail = {
            "scope": "global",
            "events": ["failed"],
            "channel": "email",
            "url": "mailto:ops@example.com",
            "enabled": False,  # saved disabled: SMTP is checked when it is enabled
        }
        saved = await client.put("/notifications/rules/mail-ops", json=mail, headers=ADMIN)
        assert saved.status_code == 201, saved.text
        no_smtp = await client.post("/notifications/rules/mail-ops/test", headers=ADMIN)
        assert no_smtp.status_code == 400
        assert "WORKER_SMTP_URL" in no_smtp.json()["error"]["message"]
        for who in (VIEWER, OPERATOR):
            refused = await client.post("/notifications/rules/mail-ops/test", headers=who)
            assert refused.status_code == 403, refused.text
        bad = await client.post("/notifications/rules/a%20b/test", headers=ADMIN)
        assert bad.status_code == 404
        queues = await admin.runtime.stores.queue.list_queues()
        assert sum(q.ready for q in queues) == 0  # nothing was enqueued
        assert (await client.get("/tasks/999999", headers=VIEWER)).status_code == 404

        entries = await admin.audit_entries(limit=50)
        tests = [
            (e.target, e.status.value, e.actor) for e in entries if e.action == "notification.test"
        ]
        assert sorted(tests) == sorted(
            [
                ("nobody", "error", "alice"),
                ("mail-ops", "error", "alice"),
                ("mail-ops", "error", "vic"),
                ("mail-ops", "error", "olga"),
                ("a b", "error", "alice"),
            ]
        )
