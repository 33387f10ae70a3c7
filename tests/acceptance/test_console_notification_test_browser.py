"""The console's "Send test" of a notification rule in a real browser (Playwright driving
/usr/bin/chromium) against a real ``longshore serve`` (its own worker delivers) and a real
webhook receiver on loopback: a rule whose receiver answers is shown delivered, one whose
receiver answers 500 is shown failed with the delivery's error; both tests are audited with
the console's actor, and no page logged a console error or a CSP violation."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.acceptance.conftest import Longshore
from tests.acceptance.console_browser import Watch, browser
from tests.acceptance.test_console_browser import OPS, TOKENS
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.webhook_receiver import Receiver

BEARER = {"authorization": f"Bearer {OPS}"}
SECRET = "browser-test-secret-9d2b"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_send_test_shows_whether_the_rule_s_receiver_got_it(
    longshore: Longshore, tmp_path: Path
) -> None:
    receiver = Receiver.reserve()
    receiver.answers["/down"] = 500
    receiver.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = start_serve(
        longshore,
        "serve",
        {
            **TOKENS,
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_POLL_INTERVAL_SECONDS": "0.2",
            "WORKER_NOTIFY_ATTEMPTS": "2",
            "WORKER_NOTIFY_RETRY_SECONDS": "0.2",
        },
    )
    try:
        wait_listening(serve, port)
        for name, path in (("ops-hook", "/hook"), ("broken-hook", "/down")):
            rule = {
                "scope": "global",
                "events": ["failed"],
                "channel": "webhook",
                "url": receiver.url(path),
                "secret": SECRET,
                "enabled": name == "ops-hook",
            }
            saved = httpx.put(
                f"{base}/admin/v1/notifications/rules/{name}", json=rule, headers=BEARER
            )
            assert saved.status_code == 201, saved.text
        watch = Watch()
        with browser(tmp_path / "profile") as context:
            page = watch.attach(context.new_page())
            page.goto(f"{base}/sign-in")
            page.fill("#token", OPS)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/notifications")
            flash = page.locator("#flash")
            page.locator('tr[data-rule="ops-hook"] button:text("Send test")').click()
            expect(flash).to_contain_text(
                "Test notification of rule ops-hook delivered (task ", timeout=30000
            )
            expect(flash).to_have_class("panel ok")
            page.locator('tr[data-rule="broken-hook"] button:text("Send test")').click()
            expect(flash).to_contain_text(
                "Test notification of rule broken-hook failed (task ", timeout=30000
            )
            expect(flash).to_contain_text(
                f"dead): DeliveryFailed: 127.0.0.1:{receiver.port} answered HTTP 500"
            )
            expect(flash).to_have_class("panel error")
        watch.assert_clean()
        [received] = receiver.at("/hook")
        assert received.signed_by(SECRET)
        assert received.json()["event"] == "test"
        assert len(receiver.at("/down")) == 2
        entries = httpx.get(f"{base}/admin/v1/audit?actor=ops&limit=100", headers=BEARER).json()[
            "events"
        ]
        tests = [(e["target"], e["status"]) for e in entries if e["action"] == "notification.test"]
        assert sorted(tests) == [("broken-hook", "ok"), ("ops-hook", "ok")]
    finally:
        receiver.stop()
        if serve.popen.poll() is None:
            stop(serve)
