"""``longshore notifications`` against a real ``serve``, on both backends: a rule is saved
with its secret read from a file, listed and shown without it, a bad URL is one line naming
the field, every change is audited, and the secret appears in no output, no file of the data
dir (the SQLite database included) and no dump of the PostgreSQL database: only its sealed
form is stored."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import Longshore
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening

pytestmark = pytest.mark.slow

SECRET = "cli-hook-secret-5d1e8f"


def pg_dump(url: str) -> bytes:
    """A plain-text dump of the database at ``url`` (schema and data)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump")) or [shutil.which("pg_dump")]
    command = found[-1]
    assert command, "pg_dump is not installed (apt-get install postgresql-client)"
    done = subprocess.run(
        [command, "--no-owner", "--dbname", url], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"notification_rules" in done.stdout
    return done.stdout


def test_rules_are_managed_from_the_command_line_and_the_secret_never_shows(
    longshore: Longshore, tmp_path: Path, store_url: str | None
) -> None:
    port = free_port()
    api = {
        "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
        "WORKER_ADMIN_TOKEN": "root:adm1n-0123456789-abcdefgh",
        "WORKER_ADMIN_ROLES": "root=admin",
    }
    longshore.env.update(api)
    secret_file = tmp_path / "hook.key"
    secret_file.write_text(SECRET + "\n")
    serve = start_serve(longshore, "serve", api)
    try:
        wait_listening(serve, port)
        saved = longshore.ok(
            "notifications", "set", "nightly-failures",
            "--scope", "job", "--target", "nightly",
            "--event", "failed_in_a_row", "--event", "recovered",
            "--failures-in-a-row", "3",
            "--url", "https://hooks.example.test/longshore",
            "--secret-file", str(secret_file),
        )  # fmt: skip
        assert "nightly-failures saved" in saved
        kept = longshore.ok(
            "notifications", "set", "kept", "--event", "failed",
            "--url", "https://hooks.example.test/kept", "--secret-file", str(secret_file),
        )  # fmt: skip
        assert "kept saved" in kept
        shown = longshore.json("notifications", "show", "nightly-failures")
        assert shown["events"] == ["failed_in_a_row", "recovered"]
        assert shown["failuresInARow"] == 3
        assert shown["secretSet"] is True
        listed = longshore.ok("notifications", "list")
        assert "nightly-failures" in listed
        assert "failed_in_a_row,recovered" in listed

        # An edit without a secret keeps it; a bad URL is refused naming the field.
        longshore.ok(
            "notifications", "set", "nightly-failures", "--scope", "job", "--target", "nightly",
            "--event", "failed", "--url", "https://hooks.example.test/other",
        )  # fmt: skip
        assert longshore.json("notifications", "show", "nightly-failures")["secretSet"] is True
        refused = longshore.run(
            "notifications", "set", "bad", "--event", "failed", "--url", "ftp://example.test/",
            "--secret-file", str(secret_file),
        )  # fmt: skip
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert "url" in line
        assert "http" in line

        longshore.ok("notifications", "delete", "nightly-failures")
        assert [rule["name"] for rule in longshore.json("notifications", "list")["rules"]] == [
            "kept"
        ]

        audit = [
            json.loads(row)
            for row in longshore.ok("audit", "export", "--format", "jsonl").splitlines()
        ]
        actions = [(row["action"], row["status"]) for row in audit]
        assert actions.count(("notification.save", "ok")) == 3
        assert ("notification.save", "error") in actions
        assert ("notification.delete", "ok") in actions
        outputs = saved + kept + listed + json.dumps(audit) + refused.stderr
        assert SECRET not in outputs
    finally:
        stop(serve)
    # No file of the data dir holds the secret: not the event store, not the audit intents,
    # not the SQLite database (its sealed form only).
    checked = 0
    sealed_seen = False
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data, path
            sealed_seen = sealed_seen or b"sealedSecret" in data
            checked += 1
    assert checked > 0  # the event store and the audit intents are there
    if store_url is None:
        assert (tmp_path / "data" / "longshore.db").is_file()
        assert sealed_seen  # the rule kept is in the file, sealed
    else:
        dump = pg_dump(store_url)
        assert SECRET.encode() not in dump
        assert b"sealedSecret" in dump
