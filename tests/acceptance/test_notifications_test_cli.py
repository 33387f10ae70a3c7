"""``longshore notifications test NAME --wait`` against a real ``serve`` (its own worker
delivers) and a real webhook receiver on loopback: a receiver that answers 2xx is
``delivered`` (exit 0), one that answers 500 prints the delivery's error (exit 1) within the
wait; the test is audited as ``notification.test``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import Longshore
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

SECRET = "cli-test-secret-0c4e7a"


def test_a_rule_is_tested_from_the_command_line_and_the_outcome_waited_for(
    longshore: Longshore, tmp_path: Path
) -> None:
    receiver = Receiver.reserve()
    receiver.answers["/down"] = 500
    receiver.start()
    port = free_port()
    api = {
        "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
        "WORKER_ADMIN_TOKEN": "root:adm1n-0123456789-abcdefgh",
        "WORKER_ADMIN_ROLES": "root=admin",
        "WORKER_POLL_INTERVAL_SECONDS": "0.2",
        "WORKER_NOTIFY_ATTEMPTS": "2",
        "WORKER_NOTIFY_RETRY_SECONDS": "0.2",
    }
    longshore.env.update(api)
    secret_file = tmp_path / "hook.key"
    secret_file.write_text(SECRET + "\n")
    serve = start_serve(longshore, "serve", api)
    try:
        wait_listening(serve, port)
        for name, path in (("ops", "/hook"), ("broken", "/down")):
            longshore.ok(
                "notifications", "set", name, "--event", "failed", "--disabled",
                "--url", receiver.url(path), "--secret-file", str(secret_file),
            )  # fmt: skip

        delivered = longshore.run("notifications", "test", "ops", "--wait", "30")
        assert delivered.returncode == 0, delivered.stderr
        queued, verdict = delivered.stdout.strip().splitlines()
        assert queued.startswith("test notification of rule ops queued: task ")
        assert verdict == "delivered"
        [received] = receiver.at("/hook")
        assert received.signed_by(SECRET)
        assert received.json()["event"] == "test"
        assert received.json()["subject"] == {
            "kind": "test",
            "rule": "ops",
            "status": "test notification",
            "error": "",
        }

        started = time.monotonic()
        failed = longshore.run("notifications", "test", "broken", "--wait", "30")
        assert time.monotonic() - started < 30
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "Traceback" not in failed.stderr
        assert failed.stdout.startswith("test notification of rule broken queued: task ")
        [line] = failed.stderr.strip().splitlines()
        assert line == f"failed (dead): DeliveryFailed: 127.0.0.1:{receiver.port} answered HTTP 500"
        assert len(receiver.at("/down")) == 2

        # Without --wait it only queues; an unknown rule is one line naming it.
        assert "queued: task " in longshore.ok("notifications", "test", "ops")
        missing = longshore.run("notifications", "test", "nobody", "--wait", "5")
        assert missing.returncode != 0
        [line] = missing.stderr.strip().splitlines()
        assert "'nobody' not found" in line

        audit = [
            json.loads(row)
            for row in longshore.ok("audit", "export", "--format", "jsonl").splitlines()
        ]
        tests = [(r["target"], r["status"]) for r in audit if r["action"] == "notification.test"]
        assert sorted(tests) == sorted(
            [("ops", "ok"), ("broken", "ok"), ("ops", "ok"), ("nobody", "error")]
        )
        assert SECRET not in delivered.stdout + failed.stdout + failed.stderr + json.dumps(audit)
    finally:
        receiver.stop()
        stop(serve)
