"""The console in a real browser (Playwright driving /usr/bin/chromium) against a real
``longshore serve``, on SQLite and PostgreSQL: a job defined by YAML (a bad YAML refused with
its line shown, a field error shown on its line), then edited by YAML from its current
definition; a notification rule created by the form (a missing secret named on its field),
listed without its secret, edited keeping its secret, and deleted. Every step is in the
audit log with its actor, and no page logged a console error or a CSP violation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.acceptance.conftest import Longshore
from tests.acceptance.console_browser import Watch, browser, screenshot
from tests.acceptance.test_console_browser import OPS, TOKENS, _tarball
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening

BEARER = {"authorization": f"Bearer {OPS}"}
HOOK_SECRET = "s3cret-hook-value-never-shown"
BAD_YAML = """\
name: yaml-report
source: tarball_path
  tarballPath: report.tar.gz
"""
GOOD_YAML = """\
name: yaml-report
description: defined in YAML
source: tarball_path
tarballPath: report.tar.gz
tarballSha256: {sha}
command: [sh, /job.sh]
env:
  - MODE=full
retries: {retries}
"""


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_jobs_by_yaml_and_notification_rules_in_a_browser(
    longshore: Longshore, tmp_path: Path
) -> None:
    sha = _tarball(tmp_path / "tarballs")
    port = free_port()
    serve = start_serve(
        longshore,
        "serve",
        {
            **TOKENS,
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_JOB_TARBALL_DIR": str(tmp_path / "tarballs"),
        },
    )
    try:
        wait_listening(serve, port)
        _journey(f"http://127.0.0.1:{port}", sha, tmp_path)
    finally:
        if serve.popen.poll() is None:
            stop(serve)


def _get(base: str, path: str) -> httpx.Response:
    return httpx.get(f"{base}/admin/v1{path}", headers=BEARER)


def _journey(base: str, sha: str, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    rule_url = "/admin/v1/notifications/rules/nightly-failures"
    watch = Watch(provoked={("/admin/v1/jobs", 400), (rule_url, 400)})
    with browser(tmp_path / "profile") as context:
        page = watch.attach(context.new_page())
        page.goto(f"{base}/sign-in")
        page.fill("#token", OPS)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        _job_by_yaml(page, base, sha, shots)
        _notification_rule(page, base, shots)
    watch.assert_clean()
    # The audit log holds every step, with the actor.
    entries = _get(base, "/audit?actor=ops&limit=100").json()["events"]
    steps = [(e["action"], e["target"], e["status"]) for e in reversed(entries)]
    assert steps == [
        ("job.upsert", "", "error"),  # the YAML error: no name could be read
        ("job.upsert", "yaml-report", "error"),  # retries: many
        ("job.upsert", "yaml-report", "ok"),
        ("job.upsert", "yaml-report", "ok"),  # edited by YAML
        ("notification.save", "nightly-failures", "error"),  # no secret
        ("notification.save", "nightly-failures", "ok"),
        ("notification.save", "nightly-failures", "ok"),  # edited, secret kept
        ("notification.delete", "nightly-failures", "ok"),
    ], steps


def _job_by_yaml(page: Any, base: str, sha: str, shots: Path) -> None:
    page.goto(f"{base}/jobs")
    page.click("#new-job-yaml")
    page.wait_for_url(f"{base}/jobs/new?view=yaml")
    expect(page.locator("#tab-yaml")).to_have_attribute("aria-current", "page")
    # A bad YAML is refused with its line and column, shown under the text, that line
    # selected; nothing is saved.
    page.fill("#job-yaml", BAD_YAML)
    page.click("#save-job-yaml")
    error = page.locator("#job-yaml-error")
    expect(error).to_have_text("yaml: line 3, column 14: mapping values are not allowed here")
    assert error.get_attribute("data-line") == "3"
    selected = page.eval_on_selector(
        "#job-yaml", "area => area.value.slice(area.selectionStart, area.selectionEnd)"
    )
    assert selected == "  tarballPath: report.tar.gz"
    assert "400" in page.inner_text("#flash")
    assert _get(base, "/jobs/yaml-report").status_code == 404
    # A field the API refuses is shown with the line that holds it.
    page.fill("#job-yaml", GOOD_YAML.format(sha=sha, retries="many"))
    page.click("#save-job-yaml")
    expect(error).to_contain_text("line 9: retries: ")
    screenshot(page, shots, "job-yaml")
    # A good one is saved: the job's page shows it.
    page.fill("#job-yaml", GOOD_YAML.format(sha=sha, retries=1))
    page.click("#save-job-yaml")
    page.wait_for_url(f"{base}/jobs/yaml-report")
    assert "defined in YAML" in page.inner_text("main")
    # Edit by YAML: the text is the current definition.
    page.click("#edit-yaml")
    page.wait_for_url(f"{base}/jobs/yaml-report/edit?view=yaml")
    current = page.input_value("#job-yaml")
    for line in ("name: yaml-report", "tarballPath: report.tar.gz", "- MODE=full", "retries: 1"):
        assert line in current.splitlines(), current
    page.fill("#job-yaml", current.replace("MODE=full", "MODE=lite").replace("retries: 1", ""))
    page.click("#save-job-yaml")
    page.wait_for_url(f"{base}/jobs/yaml-report")
    job = _get(base, "/jobs/yaml-report").json()["job"]
    assert (job["env"], job["retries"], job["revision"]) == (["MODE=lite"], 0, 2), job
    assert (job["command"], job["tarballSha256"]) == (["sh", "/job.sh"], sha)


def _notification_rule(page: Any, base: str, shots: Path) -> None:
    page.goto(f"{base}/notifications")
    assert "No notification rules." in page.inner_text("#rules")
    page.click("#new-rule")
    page.wait_for_url(f"{base}/notifications/new")
    page.fill("#rule-name", "nightly-failures")
    page.select_option("#rule-scope", "job")
    page.fill("#rule-target", "yaml-report")
    page.check("input[name=events][value=failed_in_a_row]")
    page.check("input[name=events][value=recovered]")
    page.select_option("#rule-channel", "webhook")
    page.fill("#rule-url", "https://hooks.example.com/longshore")
    page.fill("#rule-failures", "4")
    # A webhook without a secret is refused, the reason shown on the secret's field.
    page.click("#save-rule")
    missing = page.locator('[data-error-for="secret"]')
    expect(missing).to_contain_text("secret: ")
    screenshot(page, shots, "notification-form")
    page.fill("#rule-secret", HOOK_SECRET)
    page.click("#save-rule")
    page.wait_for_url(f"{base}/notifications")
    row = page.locator('tr[data-rule="nightly-failures"]')
    text = row.inner_text()
    for shown in ("job yaml-report", "failed_in_a_row, recovered", "webhook", "set", "4"):
        assert shown in text, text
    assert HOOK_SECRET not in page.content()
    screenshot(page, shots, "notifications")
    rule = _get(base, "/notifications/rules/nightly-failures").json()["rule"]
    assert (rule["secretSet"], rule["failuresInARow"], rule["enabled"]) == (True, 4, True), rule
    assert rule["events"] == ["failed_in_a_row", "recovered"]
    # Edit: the secret field is empty (write-only) and, left empty, keeps the secret.
    row.locator("a:has-text('Edit')").click()
    page.wait_for_url(f"{base}/notifications/nightly-failures/edit")
    assert page.input_value("#rule-secret") == ""
    assert HOOK_SECRET not in page.content()
    page.check("input[name=events][value=slow]")
    page.fill("#rule-warn", "600")
    page.click("#save-rule")
    page.wait_for_url(f"{base}/notifications")
    rule = _get(base, "/notifications/rules/nightly-failures").json()["rule"]
    assert rule["events"] == ["failed_in_a_row", "recovered", "slow"], rule
    assert (rule["warnAfterSeconds"], rule["secretSet"]) == (600, True), rule
    assert "10.0 min" in page.inner_text('tr[data-rule="nightly-failures"]')
    # Delete (after the confirmation).
    page.locator("tr[data-rule='nightly-failures'] button:has-text('Delete')").click()
    expect(page.locator("#flash")).to_have_text("Deleted.")
    expect(page.locator('tr[data-rule="nightly-failures"]')).to_have_count(0)
    assert _get(base, "/notifications/rules/nightly-failures").status_code == 404
