"""The console's operator pages in a real browser (Playwright driving /usr/bin/chromium)
against a real ``longshore serve``, on SQLite and PostgreSQL: the task actions (with a 409
and a 400 shown in the error panel), the dead-letter replay and purge after their impact
preview, the workers' maintenance with a sweep previewed by a dry run, a schedule created by
the form with its next fire times previewed as it is typed and its firing history with a
skip, a job run with typed parameters, secrets set and deleted; then the audit export holds
every step with its actor, and no page logged a console error or a CSP violation.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.acceptance.conftest import Longshore, Process, wait_until
from tests.acceptance.console_browser import PAGES, Watch, browser, screenshot
from tests.acceptance.test_console_browser import OPS, TOKENS, _tarball
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening

BEARER = {"authorization": f"Bearer {OPS}"}
SECRET_VALUE = "hunter2-do-not-show-me"
PARAMS = [
    {"name": "count", "type": "integer", "required": True, "overridable": True},
    {"name": "region", "type": "enum", "choices": ["eu", "us"], "default": "eu"},
    {"name": "dry_run", "type": "boolean", "default": False, "overridable": True},
]


class Api:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.base}/admin/v1{path}", params=params, headers=BEARER)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201)) -> Any:
        answer = httpx.post(f"{self.base}/admin/v1{path}", json=body or {}, headers=BEARER)
        assert answer.status_code in expect, answer.text
        return answer.json()

    def tasks(self, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/tasks", limit=1000, **params)["tasks"]
        return found


def _enqueue(longshore: Longshore, handler: str, *args: str) -> str:
    answer = longshore.json("tasks", "enqueue", handler, *args)
    return str(answer["task"]["id"])


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_the_console_operator_journey_in_a_browser(longshore: Longshore, tmp_path: Path) -> None:
    sha = _tarball(tmp_path / "tarballs")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = start_serve(
        longshore,
        "serve",
        {
            **TOKENS,
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_JOB_TARBALL_DIR": str(tmp_path / "tarballs"),
            "WORKER_CONCURRENCY": "2",
            "WORKER_LEASE_SECONDS": "3",
            "WORKER_STALE_WORKER_SECONDS": "3600",
        },
    )
    other: Process | None = None
    try:
        wait_listening(serve, port)
        api = Api(base)
        wait_until(lambda: _answers(base), "the admin API answers", timeout=30)
        other = _journey(longshore, api, sha, tmp_path)
    finally:
        if other is not None and other.popen.poll() is None:
            other.popen.kill()
        if serve.popen.poll() is None:
            stop(serve)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/admin/v1/health", headers=BEARER).status_code == 200
    except httpx.HTTPError:
        return False


def _journey(longshore: Longshore, api: Api, sha: str, tmp_path: Path) -> Process:
    base = api.base
    shots = tmp_path / "screenshots"
    # The queues "held" and (later) "reports" are paused, so their tasks stay where the
    # test puts them; the default queue runs.
    api.post("/queues/held/pause", {"paused": True})
    keyed = _enqueue(longshore, "builtin.noop", "--queue", "held", "--key", "report-1")
    plain = _enqueue(longshore, "builtin.noop", "--queue", "held")
    later = _enqueue(
        longshore, "builtin.noop", "--queue", "held", "--key", "later-1", "--run-at", "+1h"
    )
    sleeper = _enqueue(longshore, "builtin.sleep", "--payload", '{"seconds": 120}')
    for _ in range(3):
        _enqueue(longshore, "builtin.fail", "--queue", "reports", "--max-attempts", "1")
    wait_until(
        lambda: [t["id"] for t in api.tasks(state="running")] == [sleeper],
        "the sleeping task runs",
        timeout=30,
    )
    wait_until(lambda: api.get("/dlq/stats")["stats"]["total"] == 3, "3 tasks are dead", timeout=30)
    api.post("/queues/reports/pause", {"paused": True})
    api.post(
        "/jobs",
        {
            "name": "export",
            "source": "tarball_path",
            "tarballPath": "report.tar.gz",
            "tarballSha256": sha,
            "queue": "held",
            "params": PARAMS,
        },
    )

    watch = Watch(
        provoked={
            (f"/admin/v1/tasks/{sleeper}/complete", 409),
            (f"/admin/v1/tasks/{plain}/reschedule", 400),
            ("/admin/v1/schedules/preview", 400),
            ("/admin/v1/schedules/nightly/run", 409),
        }
    )
    with browser(tmp_path / "profile") as context:
        page = watch.attach(context.new_page())
        page.goto(f"{base}/sign-in")
        page.fill("#token", OPS)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        _tasks(page, api, base, shots, keyed=keyed, plain=plain, later=later, sleeper=sleeper)
        _dead_letters(page, api, base, shots)
        other = _workers(longshore, page, api, base, shots)
        _schedules(page, api, base, shots)
        _jobs_and_secrets(page, api, base, shots)
        for path in (*PAGES, "/schedules/new", "/schedules/nightly", "/jobs/export"):
            page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            assert page.locator("main h1").count() == 1, path
        _audit(page, base, tmp_path)
    watch.assert_clean()
    return other


def _row(page: Any, task_id: str) -> Any:
    return page.locator(f'tr[data-task="{task_id}"]')


def _tasks(page: Any, api: Api, base: str, shots: Path, **ids: str) -> None:
    keyed, plain, later, sleeper = ids["keyed"], ids["plain"], ids["later"], ids["sleeper"]
    # By state: the running task; completing it is refused (409, its worker named), shown
    # in the error panel with the request id and a hint.
    page.goto(f"{base}/tasks")
    page.select_option("select[name=state]", "running")
    page.click("form.filters button:has-text('Filter')")
    page.wait_for_url(re.compile(r".*state=running.*"))
    assert page.locator("tr[data-task]").count() == 1
    _row(page, sleeper).locator("button:has-text('Complete')").click()
    flash = page.locator("#flash.error")
    expect(flash).to_contain_text("409")
    text = flash.inner_text()
    assert "Code: conflict" in text, text
    assert re.search(r"Request id: \S+", text), text
    assert "reload the page" in text, text
    # Filters: queue, handler, text.
    page.goto(f"{base}/tasks?queue=held")
    assert {row.get_attribute("data-task") for row in page.locator("tr[data-task]").all()} == {
        keyed,
        plain,
        later,
    }
    assert _row(page, later).get_attribute("data-state") == "scheduled"
    page.fill("input[name=query]", "later-1")
    page.click("form.filters button:has-text('Filter')")
    page.wait_for_url(re.compile(r".*query=later-1.*"))
    assert page.locator("tr[data-task]").count() == 1
    page.goto(f"{base}/tasks?queue=held&handler=builtin.sleep")
    assert page.locator("tr[data-task]").count() == 0
    page.goto(f"{base}/tasks?queue=held")
    screenshot(page, shots, "tasks")

    # Run now: the scheduled task becomes ready (its queue is paused, so it stays).
    _row(page, later).locator("button:has-text('Run now')").click()
    expect(page.locator("#flash.ok")).to_contain_text(f"Task {later}: scheduled → ready")
    expect(_row(page, later)).to_have_attribute("data-state", "ready")

    # Reschedule: attempts must stay below max attempts (400 shown on the field), then
    # priority, attempts, max attempts and run_at change.
    row = _row(page, plain)
    row.locator("summary:has-text('Reschedule')").click()
    form = row.locator("form[data-url$='/reschedule']")
    form.locator("input[name=attempts]").fill("3")
    form.locator("input[name=maxAttempts]").fill("3")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash.error")).to_contain_text("400")
    assert "attempts" in page.inner_text("#flash")
    form.locator("input[name=maxAttempts]").fill("9")
    form.locator("input[name=priority]").fill("5")
    form.locator("input[name=runAt]").fill("2031-05-04T03:02:01")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash.ok")).to_contain_text("→ scheduled")
    task = next(t for t in api.tasks(queue="held") if t["id"] == plain)
    assert (task["priority"], task["attempts"], task["maxAttempts"]) == (5, 3, 9)
    assert task["runAt"].startswith("2031-05-0"), task["runAt"]
    expect(_row(page, plain)).to_have_attribute("data-state", "scheduled")

    # Fail (with a reason): the task is dead with that reason.
    row = _row(page, keyed)
    row.locator("summary:has-text('Fail')").click()
    row.locator("input[name=reason]").fill("bad input from the upstream export")
    row.locator("button:has-text('Fail task')").click()
    expect(page.locator("#flash.ok")).to_contain_text("→ dead")
    dead = api.tasks(state="dead", queue="held")
    assert [(t["id"], t["lastError"]) for t in dead] == [
        (keyed, "bad input from the upstream export")
    ]

    # Complete: the keyless task is gone; remove by key: the keyed one too.
    _row(page, plain).locator("button:has-text('Complete')").click()
    expect(page.locator("#flash.ok")).to_contain_text(f"Task {plain}: scheduled → done")
    expect(_row(page, plain)).to_have_count(0)
    page.fill("#remove-by-key input[name=key]", "later-1")
    page.click("#remove-by-key button[type=submit]")
    expect(page.locator("#flash.ok")).to_contain_text(f"Task {later}: ready → removed")
    expect(_row(page, later)).to_have_count(0)
    assert [t["id"] for t in api.tasks(queue="held")] == [keyed]


def _dead_letters(page: Any, api: Api, base: str, shots: Path) -> None:
    page.goto(f"{base}/dead-letters?queue=reports")
    assert page.locator("tr[data-task]").count() == 3
    page.click("#replay-filter button[type=submit]")
    preview = page.locator("#replay-filter [data-preview-out]")
    expect(preview).to_have_text("This replays 3 tasks of queue reports.")
    expect(page.locator("#replay-filter button[type=submit]")).to_have_text(
        "Confirm: Replay by filter"
    )
    screenshot(page, shots, "dead-letters-preview")
    unchanged = api.get("/dlq/stats")["stats"]["byQueue"]
    assert unchanged == {"reports": 3, "held": 1}, "a preview changed something"
    page.click("#replay-filter button[type=submit]")
    expect(page.locator("#flash.ok")).to_have_text("Replayed 3 tasks.")
    expect(preview).to_be_hidden()
    assert api.get("/dlq/stats")["stats"]["byQueue"] == {"held": 1}
    assert len(api.tasks(queue="reports", state="ready")) == 3

    page.goto(f"{base}/dead-letters")
    page.fill("#purge input[name=olderThanSeconds]", "0")
    page.click("#purge button[type=submit]")
    expect(page.locator("#purge [data-preview-out]")).to_have_text(
        "This purges 1 task of queue held."
    )
    assert api.get("/dlq/stats")["stats"]["total"] == 1
    page.click("#purge button[type=submit]")
    expect(page.locator("#flash.ok")).to_have_text("Purged 1 dead task.")
    expect(page.locator("tr[data-task]")).to_have_count(0)
    assert api.get("/dlq/stats")["stats"]["total"] == 0


def _workers(longshore: Longshore, page: Any, api: Api, base: str, shots: Path) -> Process:
    # A second worker (claiming from a queue nobody uses) dies without a goodbye.
    other = longshore.start("worker", "--queue", "idle", name="other-worker")
    wait_until(lambda: len(api.get("/workers")["workers"]) == 2, "two workers", timeout=30)
    serving = {
        w["workerId"] for w in api.get("/workers")["workers"] if "idle" not in (w["queues"] or [])
    }
    gone = next(
        w["workerId"] for w in api.get("/workers")["workers"] if w["workerId"] not in serving
    )
    other.popen.send_signal(signal.SIGKILL)
    other.popen.wait(timeout=10)
    time.sleep(9)

    page.goto(f"{base}/workers")
    expect(page.locator("#workers")).to_contain_text(gone)
    page.fill("#sweep input[name=olderThanSeconds]", "7")
    page.click("#sweep button[type=submit]")
    preview = page.locator("#sweep [data-preview-out]")
    expect(preview).to_contain_text(f"This sweeps 1 stale worker ({gone};")
    screenshot(page, shots, "workers-sweep")
    assert gone in {w["workerId"] for w in api.get("/workers")["workers"]}, "a dry run swept"
    page.click("#sweep button[type=submit]")
    expect(page.locator("#flash.ok")).to_contain_text("Swept 1 worker")
    assert {w["workerId"] for w in api.get("/workers")["workers"]} == serving
    expect(page.locator("#workers")).not_to_contain_text(gone)

    page.fill("#force-unlock textarea[name=workerIds]", gone)
    page.click("#force-unlock button[type=submit]")
    expect(page.locator("#flash.ok")).to_have_text("Released 0 tasks.")
    page.click("#cleanup button[type=submit]")
    expect(page.locator("#flash.ok")).to_contain_text("Cleanup: 0 expired keys deleted")
    return other


def _schedules(page: Any, api: Api, base: str, shots: Path) -> None:
    page.goto(f"{base}/schedules")
    page.click("#new-schedule")
    page.wait_for_url(f"{base}/schedules/new")
    page.fill("#schedule-name", "nightly")
    page.select_option("#factory", "export")
    page.fill("#timezone", "Europe/Berlin")
    # As it is typed: a bad spec is named, a good one previews its next five fire times in
    # the schedule's zone.
    page.locator("#spec").press_sequentially("61 * * * *", delay=20)
    expect(page.locator("#preview-error")).to_contain_text("minute")
    page.fill("#spec", "")
    page.locator("#spec").press_sequentially("30 9 * * 1-5", delay=20)
    times = page.locator("#preview li")
    expect(times).to_have_count(5)
    for text in times.all_inner_texts():
        assert re.search(r"T09:30:00\+0[12]:00 \(\S+T0[78]:30:00Z\)", text), text
    assert page.locator("#preview-error").is_hidden()
    page.fill("textarea[name=payload]", '{"params": {"count": 3}}')
    page.select_option("select[name=overlapPolicy]", "forbid")
    screenshot(page, shots, "schedule-form")
    page.click("#save-schedule")
    page.wait_for_url(f"{base}/schedules/nightly")
    assert "Europe/Berlin" in page.inner_text("#definition")

    # Fire it, then again while its task still waits: the overlap policy skips the second
    # (409 shown), and the history says so with the reason.
    page.click("button:has-text('Run now')")
    expect(page.locator("#flash.ok")).to_have_text("Fired.")
    page.click("button:has-text('Run now')")
    expect(page.locator("#flash.error")).to_contain_text("409")
    page.reload()
    skipped = page.locator('#firings tr[data-type="ScheduleSkipped"]')
    expect(skipped).to_have_count(1)
    assert "overlap" in skipped.inner_text()
    expect(page.locator('#firings tr[data-type="ScheduleFired"]')).to_have_count(1)
    screenshot(page, shots, "schedule")

    # Edit: the form opens with the preview of the saved spec, and follows a new zone.
    page.click("#edit-schedule")
    expect(page.locator("#preview li")).to_have_count(5)
    page.fill("#timezone", "Asia/Tokyo")
    expect(page.locator("#preview li").first).to_contain_text("T09:30:00+09:00")
    page.click("#save-schedule")
    page.wait_for_url(f"{base}/schedules/nightly")
    assert api.get("/schedules/nightly")["schedule"]["timezone"] == "Asia/Tokyo"


def _jobs_and_secrets(page: Any, api: Api, base: str, shots: Path) -> None:
    # A job declaring parameters is run with the overridable ones, typed.
    page.goto(f"{base}/jobs/export")
    form = page.locator("#run-form")
    assert form.locator("[name='params.region']").count() == 0, "not overridable"
    form.locator("input[name='params.count']").fill("7")
    form.locator("select[name='params.dry_run']").select_option("true")
    screenshot(page, shots, "job-run-params")
    page.click("#run-with-params")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/runs/.+"))
    run_id = page.url.rsplit("/", 1)[1]
    run = api.get(f"/runs/{run_id}")
    run = run.get("run", run)
    assert run["params"] == {"count": 7, "dry_run": True, "region": "eu"}, run

    # Secrets: names only; set and deleted by an admin.
    page.goto(f"{base}/secrets")
    page.fill("#secret-name", "EXPORT_TOKEN")
    page.fill("#secret-value", SECRET_VALUE)
    page.click("#save-secret")
    row = page.locator('tr[data-secret="EXPORT_TOKEN"]')
    expect(row).to_contain_text(f"{len(SECRET_VALUE)} B")
    assert page.input_value("#secret-value") == ""
    assert SECRET_VALUE not in page.content()
    screenshot(page, shots, "secrets")
    row.locator("button:has-text('Delete')").click()
    expect(row).to_have_count(0)
    assert api.get("/secrets")["secrets"] == []


def _audit(page: Any, base: str, tmp_path: Path) -> None:
    page.goto(f"{base}/audit?actor=ops")
    with page.expect_download() as exported:
        page.click("#export-jsonl")
    saved = tmp_path / "audit.jsonl"
    exported.value.save_as(saved)
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert {row["actor"] for row in rows} == {"ops"}
    steps = {(row["action"], row["status"]) for row in rows}
    for step in (
        ("task.complete", "error"),
        ("task.complete", "ok"),
        ("task.run_now", "ok"),
        ("task.reschedule", "error"),
        ("task.reschedule", "ok"),
        ("task.fail", "ok"),
        ("task.remove", "ok"),
        ("dlq.replay", "ok"),
        ("dlq.purge", "ok"),
        ("maintenance.sweep_stale_workers", "ok"),
        ("maintenance.force_unlock", "ok"),
        ("maintenance.cleanup", "ok"),
        ("schedule.create", "ok"),
        ("schedule.run", "ok"),
        ("job.run", "ok"),
        ("secret.set", "ok"),
        ("secret.delete", "ok"),
    ):
        assert step in steps, (step, sorted(steps))
    previews = [r for r in rows if r["action"] == "dlq.replay" and "dryRun=true" in r["detail"]]
    assert previews, "the replay preview is audited"
