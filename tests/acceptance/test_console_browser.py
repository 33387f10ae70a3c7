"""The console in a real browser (Playwright driving /usr/bin/chromium) against a real
``longshore serve``: sign in, define a job by the form (an error shown on its field first),
run it and watch its output arrive live, download its artifact and check its sha256, pause a
schedule; every page without a console error or a CSP violation, and a screenshot of each.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.acceptance.conftest import Longshore, wait_until
from tests.acceptance.console_browser import PAGES, Watch, browser, screenshot
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

OPS = "ops-console-token-0123456789abcdef"
APPROVAL = "approval-token-0123456789abcdef"
VIC = "vic-console-token-fedcba9876543210"
TOKENS = {"WORKER_ADMIN_TOKEN": f"ops:{OPS},vic:{VIC}", "WORKER_ADMIN_ROLES": "ops=admin"}
REPORT = b"nightly report: 42 rows\n"
SCRIPT = b"""#!/bin/sh
echo "tick 1"
sleep 4
echo "tick 2"
mkdir -p /artifacts
printf 'nightly report: 42 rows\\n' > /artifacts/report.txt
echo "done"
"""


def _tarball(folder: Path) -> str:
    """``report.tar.gz`` in ``folder`` (a Dockerfile and the script); returns its sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        dockerfile = f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n'
        for name, data in (("Dockerfile", dockerfile.encode()), ("job.sh", SCRIPT)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.tar.gz").write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_the_console_journey_in_a_browser(longshore: Longshore, tmp_path: Path) -> None:
    ensure_busybox_image(docker_client())
    sha = _tarball(tmp_path / "tarballs")
    port = free_port()
    serve = start_serve(
        longshore,
        "serve",
        {
            **TOKENS,
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_JOB_TARBALL_DIR": str(tmp_path / "tarballs"),
            "WORKER_CONCURRENCY": "2",
        },
    )
    try:
        wait_listening(serve, port)
        _journey(f"http://127.0.0.1:{port}", sha, tmp_path)
    finally:
        if serve.popen.poll() is None:
            stop(serve)


def _journey(base: str, sha: str, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    watch = Watch(provoked={("/sign-in", 401), ("/admin/v1/jobs", 400), ("/runs/no-such-run", 404)})
    with browser(tmp_path / "profile") as context:
        page = watch.attach(context.new_page())

        # Sign in: the console sends an unauthenticated browser to the sign-in page.
        page.goto(f"{base}/jobs")
        assert page.url.startswith(f"{base}/sign-in"), page.url
        screenshot(page, shots, "sign-in")
        page.fill("#token", "not-the-token-at-all-0123456789")
        page.click("button[type=submit]")
        assert page.locator("#sign-in-error").is_visible()
        page.fill("#token", OPS)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/jobs")
        assert "ops (admin)" in page.inner_text("header")

        # Define the job by the form: an invalid field is shown on that field first.
        page.click("#new-job")
        page.fill("input[name=name]", "nightly-report")
        page.fill("input[name=description]", "the nightly report")
        page.select_option("select[name=source]", "tarball_path")
        page.fill("input[name=tarballPath]", "report.tar.gz")
        page.fill("input[name=tarballSha256]", sha)
        page.fill("input[name=timeoutSeconds]", "-1")
        page.click("#save-job")
        error = page.locator('[data-error-for="timeoutSeconds"]')
        error.wait_for(state="visible")
        assert "timeoutSeconds" in error.inner_text()
        assert page.locator("#flash.error").is_visible()
        assert re.search(r"Request id: \S+", page.inner_text("#flash"))
        screenshot(page, shots, "job-form")
        page.fill("input[name=timeoutSeconds]", "120")
        page.click("#save-job")
        page.wait_for_url(f"{base}/jobs/nightly-report")
        assert "tarball_path" in page.inner_text("#definition")

        # Run it and watch its output arrive live, while the run is still going.
        page.click("button:has-text('Run now')")
        page.wait_for_url(f"{base}/runs/*")
        run_id = page.url.rsplit("/", 1)[1]
        output = page.locator("#output")
        expect(output).to_contain_text("tick 1", timeout=120_000)
        assert "done" not in output.inner_text(), "the first line came only after the run ended"
        assert page.inner_text("#output-state") in ("following", "running")
        expect(page.locator("#output-state")).to_have_text(re.compile("^ended"), timeout=60_000)
        assert output.inner_text().splitlines() == ["tick 1", "tick 2", "done"]
        assert page.inner_text("#output-state") == "ended: succeeded"
        page.locator("#artifacts").wait_for()
        assert page.locator("#timeline li").count() >= 3
        screenshot(page, shots, "run")

        # Download the artifact; its bytes match the sha256 shown.
        shown_sha = page.inner_text("#artifacts .sha256").strip()
        with page.expect_download() as download_info:
            page.click("#artifacts a:has-text('report.txt')")
        saved = tmp_path / "report.txt"
        download_info.value.save_as(saved)
        assert saved.read_bytes() == REPORT
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == shown_sha

        # A schedule (made through the API) is paused from the console.
        made = httpx.post(
            f"{base}/admin/v1/schedules",
            json={"name": "report-yearly", "spec": "0 0 1 1 *", "factory": "nightly-report"},
            headers={"authorization": f"Bearer {OPS}"},
        )
        assert made.status_code in (200, 201), made.text
        page.goto(f"{base}/schedules")
        row = page.locator('tr[data-schedule="report-yearly"]')
        row.locator("button:has-text('Pause')").click()
        row.locator("button:has-text('Resume')").wait_for()
        assert "paused" in page.locator('tr[data-schedule="report-yearly"]').inner_text()

        # Every page renders, without a console error or a CSP violation.
        for path in PAGES:
            page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            assert page.locator("main h1").count() == 1
            name = path.strip("/").replace("/", "-") or "overview"
            screenshot(page, shots, name)
        page.goto(f"{base}/jobs/nightly-report")
        screenshot(page, shots, "job")
        page.goto(f"{base}/audit?actor=ops")
        text = page.inner_text("#audit")
        for action in ("job.upsert", "job.run", "schedule.pause"):
            assert action in text, text
        # The export link downloads what the filters select, every step with its actor.
        with page.expect_download() as exported:
            page.click("#export-csv")
        exported_file = tmp_path / "audit.csv"
        exported.value.save_as(exported_file)
        rows = list(csv.DictReader(io.StringIO(exported_file.read_text())))
        steps = {(row["actor"], row["action"], row["status"]) for row in rows}
        for step in (("ops", "job.upsert", "ok"), ("ops", "job.run", "ok")):
            assert step in steps, steps
        assert {row["actor"] for row in rows} == {"ops"}
        # The overview follows the event stream: a pause made elsewhere shows up by itself.
        page.goto(f"{base}/")
        expect(page.locator("#live-state")).to_have_text("live")
        assert "paused" not in page.inner_text("#live dl")
        bearer = {"authorization": f"Bearer {OPS}"}
        assert httpx.post(f"{base}/admin/v1/pause", headers=bearer).status_code == 200
        expect(page.locator("#live dl")).to_contain_text("paused", timeout=30_000)
        assert httpx.post(f"{base}/admin/v1/resume", headers=bearer).status_code == 200
        page.goto(f"{base}/runs/no-such-run")
        assert page.locator("#error-panel").is_visible()
        screenshot(page, shots, "error")
        watch.assert_clean()
    assert run_id


def _mutation_controls(page: Any) -> int:
    controls = (
        "button[data-action], form[data-api-form] button, #new-job, #new-job-yaml, "
        "#new-schedule, #new-rule, #edit-yaml"
    )
    return int(page.locator(controls).count())


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_viewer_sees_no_mutation_control_and_forged_or_tokenless_mutations_are_refused(
    longshore: Longshore, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = start_serve(
        longshore,
        "serve",
        {
            **TOKENS,
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_ADMIN_REQUIRE_APPROVAL": "true",
            "WORKER_ADMIN_APPROVAL_TOKEN": APPROVAL,
        },
    )
    try:
        wait_listening(serve, port)
        ops = {"authorization": f"Bearer {OPS}"}
        made = httpx.post(
            f"{base}/admin/v1/schedules", json={"name": "s1", "spec": "0 0 1 1 *"}, headers=ops
        )
        assert made.status_code in (200, 201, 412), made.text
        longshore.ok("tasks", "enqueue", "builtin.fail", "--max-attempts", "1")

        def dead() -> int:
            listed = httpx.get(f"{base}/admin/v1/dlq", headers=ops).json()
            return int(listed["total"])

        wait_until(lambda: dead() == 1, "the failing task is dead-lettered", timeout=30)
        watch = Watch(expect_refusals=True, approval=APPROVAL)
        with browser(tmp_path / "viewer") as context:
            page = watch.attach(context.new_page())
            page.goto(f"{base}/sign-in")
            page.fill("#token", VIC)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            for path in PAGES:
                page.goto(f"{base}{path}")
                assert _mutation_controls(page) == 0, f"a mutation control on {path}"
            # A forged mutation (with the session's own CSRF token) is refused by the server.
            forged = _fetch(page, "/admin/v1/pause", with_csrf=True)
            assert forged == {"status": 403, "code": "forbidden"}, forged
        with browser(tmp_path / "admin") as context:
            page = watch.attach(context.new_page())
            page.goto(f"{base}/sign-in")
            page.fill("#token", OPS)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/queues")
            assert _mutation_controls(page) > 0
            # Without the CSRF token the same admin's mutation is refused.
            # Replay the dead task from the console: approval is required, the console asks
            # for the token (the first attempt is refused and audited).
            page.goto(f"{base}/dead-letters")
            page.locator("tr[data-task] button:has-text('Replay')").click()
            expect(page.locator("#flash")).to_have_text("Replayed 1 task.")
            tokenless = _fetch(page, "/admin/v1/pause", with_csrf=False)
            assert tokenless["status"] == 403, tokenless
            assert tokenless["code"] == "csrf_rejected", tokenless
            accepted = _fetch(page, "/admin/v1/pause", with_csrf=True, approval=APPROVAL)
            assert accepted["status"] == 200, accepted
            _fetch(page, "/admin/v1/resume", with_csrf=True)
        watch.assert_clean()
        audit = httpx.get(f"{base}/admin/v1/audit?action=dequeue.pause", headers=ops).json()
        seen = [(row["actor"], row["status"], row["detail"][:20]) for row in audit["events"]]
        assert ("vic", "error", "403 forbidden: role ") in seen, seen
        assert ("ops", "error", "403 csrf_rejected: r") in seen, seen
        assert ("ops", "ok", "paused=true") in seen, seen
        replays = httpx.get(f"{base}/admin/v1/audit?action=dlq.replay_ids", headers=ops).json()
        assert [(r["actor"], r["status"]) for r in replays["events"]] == [
            ("ops", "ok"),
            ("ops", "error"),
        ]
        assert "approval_required" in replays["events"][1]["detail"]
    finally:
        stop(serve)


def _fetch(page: Any, path: str, *, with_csrf: bool, approval: str = "") -> dict[str, Any]:
    """A POST made by the page's own script context (as a console action, or forged)."""
    result: dict[str, Any] = page.evaluate(
        """async ([path, withCsrf, approval]) => {
            const token = document.querySelector('meta[name="longshore-csrf"]').content;
            const headers = {"content-type": "application/json"};
            if (withCsrf) headers["x-longshore-csrf"] = token;
            if (approval) headers["x-admin-approval"] = approval;
            const response = await fetch(path, {method: "POST", headers, body: "{}"});
            const body = await response.json();
            return {status: response.status, code: body.error ? body.error.code : null};
        }""",
        [path, with_csrf, approval],
    )
    return result


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_basic_auth_and_read_only_mode(longshore: Longshore, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = longshore.start(
        "serve",
        "--read-only",
        name="serve",
        env={
            "WORKER_SHUTDOWN_GRACE_SECONDS": "1",
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_ADMIN_AUTH": "basic",
        },
    )
    try:
        wait_listening(serve, port)
        err = (serve.logs / "serve.err").read_text()
        told = err.split("console password of user 'admin'", 1)[1]
        password = told.split("shown only this once:\n", 1)[1].split()[0]
        stored = Path(longshore.env["WORKER_DATA_DIR"]) / "admin-password"
        assert stored.read_text().strip() == password
        challenged = httpx.get(f"{base}/")
        assert challenged.status_code == 401
        assert challenged.headers["www-authenticate"].startswith("Basic")
        assert 'id="error-panel"' in challenged.text
        watch = Watch()
        credentials = {"username": "admin", "password": password}
        with browser(tmp_path / "basic", http_credentials=credentials) as context:
            page = watch.attach(context.new_page())
            for path in PAGES:
                assert page.goto(f"{base}{path}").status == 200
                assert "admin (admin)" in page.inner_text("header")
                assert _mutation_controls(page) == 0, f"read-only, yet a control on {path}"
            assert "read-only" in page.inner_text("header")
            watch.expect_refusals = True
            refused = _fetch(page, "/admin/v1/pause", with_csrf=True)
            assert refused == {"status": 403, "code": "read_only"}, refused
        watch.assert_clean()
        token = (Path(longshore.env["WORKER_DATA_DIR"]) / "admin-token").read_text().strip()
        api = httpx.post(f"{base}/admin/v1/pause", headers={"authorization": f"Bearer {token}"})
        assert api.status_code == 403, api.text
        assert api.json()["error"]["code"] == "read_only"
        assert "read-only" in api.json()["error"]["message"]
    finally:
        stop(serve)
