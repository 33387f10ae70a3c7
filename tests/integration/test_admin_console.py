"""The console over a whole runtime, in process: pages, assets, sign-in, sessions, CSRF,
read-only, the sign-in modes and the error panel (the browser tests drive the same pages in
Chromium)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from admin.config import Role
from admin.console import pages, pages_tasks
from admin.sessions import COOKIE, CSRF_HEADER
from store.jobs.models import JobDefinition
from store.queue.models import NewTask
from tests.integration.admin_harness import ADMIN, TOKENS, FullAdmin, full_admin
from tests.integration.test_admin_jobs import settings

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

ROOT = "http://admin.test"
PAGES = (
    "/",
    "/jobs",
    "/jobs/new",
    "/jobs/new?view=yaml",
    "/runs",
    "/schedules",
    "/schedules/new",
    "/queues",
    "/tasks",
    "/dead-letters",
    "/workers",
    "/audit",
    "/settings",
    "/secrets",
    "/notifications",
    "/notifications/new",
)
SAME_ORIGIN = {"sec-fetch-site": "same-origin", "origin": "null"}


@pytest.fixture
async def console(backend: str, queue_location: Any, tmp_path: Path) -> AsyncIterator[FullAdmin]:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        yield admin


async def sign_in(admin: FullAdmin, name: str) -> str:
    """Sign ``name`` in through the form; returns the page's CSRF token."""
    admin.client.cookies.clear()
    response = await admin.client.post(
        f"{ROOT}/sign-in",
        content=f"token={TOKENS[name]}&next=/queues",
        headers={"content-type": "application/x-www-form-urlencoded", **SAME_ORIGIN},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/queues"
    page = await admin.client.get(f"{ROOT}/queues")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="longshore-csrf" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


class _Markup(HTMLParser):
    """What the CSP forbids: inline scripts, inline styles and event handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.problems.append("a script without src")
        if tag == "style":
            self.problems.append("a style element")
        self.problems += [f"{tag}[{name}]" for name in names if name == "style"]
        self.problems += [f"{tag}[{name}]" for name in names if name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("an inline script body")


async def test_every_page_is_html_no_store_with_the_security_headers_and_no_inline_code(
    console: FullAdmin,
) -> None:
    await sign_in(console, "vic")
    for path in PAGES:
        response = await console.client.get(f"{ROOT}{path}")
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "connect-src 'self'" in csp
        assert "unsafe-inline" not in csp
        parser = _Markup()
        parser.feed(response.text)
        assert parser.problems == [], (path, parser.problems)
        assert not re.search(r'(?:src|href)="(?:https?:)?//', response.text), path  # no CDN


async def test_assets_have_versioned_names_and_a_long_cache(console: FullAdmin) -> None:
    await sign_in(console, "vic")
    page = (await console.client.get(f"{ROOT}/")).text
    urls = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page)
    assert {url.rsplit(".", 1)[1] for url in urls} == {"css", "js"}
    for url in urls:
        assert re.fullmatch(r"/assets/console\.[0-9a-f]{12}\.(css|js)", url), url
        console.client.cookies.clear()  # assets need no session
        response = await console.client.get(f"{ROOT}{url}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
    missing = await console.client.get(f"{ROOT}/assets/console.000000000000.js")
    assert missing.status_code == 404
    assert 'id="error-panel"' in missing.text


async def test_without_a_session_a_page_sends_the_browser_to_sign_in(console: FullAdmin) -> None:
    response = await console.client.get(f"{ROOT}/runs?status=failed")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/runs%3Fstatus%3Dfailed"
    form = await console.client.get(f"{ROOT}/sign-in?next=//evil.example/")
    assert 'name="next" value="/"' in form.text


async def test_sign_in_sets_a_strict_httponly_cookie_and_a_wrong_token_is_401(
    console: FullAdmin,
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded", **SAME_ORIGIN}
    wrong = await console.client.post(f"{ROOT}/sign-in", content="token=nope&next=/", headers=form)
    assert wrong.status_code == 401
    assert "That token is not valid." in wrong.text
    assert COOKIE not in wrong.cookies
    right = await console.client.post(
        f"{ROOT}/sign-in", content=f"token={TOKENS['olga']}&next=//evil.example", headers=form
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for flag in ("HttpOnly", "Path=/", "SameSite=strict"):
        assert flag in cookie, cookie
    cross = await console.client.post(
        f"{ROOT}/sign-in",
        content=f"token={TOKENS['olga']}",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "sec-fetch-site": "cross-site",
        },
    )
    assert cross.status_code == 403


async def test_a_session_mutation_needs_the_csrf_token_and_a_refusal_is_audited(
    console: FullAdmin,
) -> None:
    token = await sign_in(console, "olga")
    missing = await console.client.post(f"{ROOT}/admin/v1/pause", headers=SAME_ORIGIN)
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "csrf_rejected"
    wrong = await console.client.post(
        f"{ROOT}/admin/v1/pause", headers={**SAME_ORIGIN, CSRF_HEADER: token[::-1]}
    )
    assert wrong.status_code == 403
    assert await console.services.queue.is_global_paused() is False
    ok = await console.client.post(
        f"{ROOT}/admin/v1/pause", headers={**SAME_ORIGIN, CSRF_HEADER: token}
    )
    assert ok.status_code == 200, ok.text
    entries = await console.audit_entries(action="dequeue.pause")
    assert [(e.actor, e.status.value) for e in reversed(entries)] == [
        ("olga", "error"),
        ("olga", "error"),
        ("olga", "ok"),
    ]
    assert "csrf_rejected" in entries[-1].detail
    # Signing out ends the session: its cookie no longer authenticates.
    out = await console.client.post(
        f"{ROOT}/sign-out",
        content=f"csrf={token}",
        headers={"content-type": "application/x-www-form-urlencoded", **SAME_ORIGIN},
    )
    assert out.status_code == 303
    assert (await console.client.get(f"{ROOT}/admin/v1/health")).status_code == 401


async def test_roles_decide_the_controls_shown(console: FullAdmin) -> None:
    definition = JobDefinition(
        name="nightly",
        source="git_tag",
        source_fields={"repo": "https://git.example.com/a.git", "tag": "v1"},
    )
    await console.services.jobs.upsert(definition)  # type: ignore[union-attr]
    shown: dict[str, int] = {}
    for name in ("vic", "olga", "alice"):
        await sign_in(console, name)
        text = "".join([(await console.client.get(f"{ROOT}{p}")).text for p in PAGES])
        text += (await console.client.get(f"{ROOT}/jobs/nightly")).text
        shown[name] = text.count("data-action")
    assert shown["vic"] == 0
    assert 0 < shown["olga"] < shown["alice"]


async def test_errors_are_a_panel_with_message_code_request_id_and_hint(
    console: FullAdmin,
) -> None:
    await sign_in(console, "vic")
    missing = await console.client.get(f"{ROOT}/runs/no-such-run")
    assert missing.status_code == 404
    assert "run &#39;no-such-run&#39; not found" in missing.text
    assert "<code>not_found</code>" in missing.text
    assert missing.headers["x-request-id"] in missing.text
    assert "Hint:" in missing.text
    bad = await console.client.get(f"{ROOT}/runs?status=exploded")
    assert bad.status_code == 400
    assert "status: &#39;exploded&#39; is not one of" in bad.text
    bad_state = await console.client.get(f"{ROOT}/tasks?state=exploded")
    assert bad_state.status_code == 400
    assert "state: &#39;exploded&#39; is not one of ready, scheduled" in bad_state.text
    no_schedule = await console.client.get(f"{ROOT}/schedules/no-such-schedule")
    assert no_schedule.status_code == 404
    assert "schedule &#39;no-such-schedule&#39; not found" in no_schedule.text


async def test_read_only_refuses_every_mutation_and_shows_no_control(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, read_only=True) as admin:
        refused = await admin.client.post("/pause", headers=ADMIN)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "read_only"
        assert "read-only" in refused.json()["error"]["message"]
        [entry] = await admin.audit_entries(action="dequeue.pause")
        assert (entry.actor, entry.status.value) == ("alice", "error")
        await sign_in(admin, "alice")
        for path in PAGES:
            assert "data-action" not in (await admin.client.get(f"{ROOT}{path}")).text


def _basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {encoded}"}


async def test_basic_mode_challenges_the_browser_and_needs_csrf_for_mutations(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    password = "a-long-console-password-0123456789"
    async with full_admin(
        backend,
        queue_location,
        tmp_path,
        console_auth="basic",
        basic_password=password,
        roles={"admin": Role.ADMIN},
    ) as admin:
        client = admin.client
        challenged = await client.get(f"{ROOT}/")
        assert challenged.status_code == 401
        assert challenged.headers["www-authenticate"].startswith("Basic ")
        wrong = await client.get(f"{ROOT}/", headers=_basic("admin", "nope"))
        assert wrong.status_code == 401
        page = await client.get(f"{ROOT}/queues", headers=_basic("admin", password))
        assert page.status_code == 200
        assert "admin (admin)" in page.text
        token = csrf_of(page.text)
        refused = await client.post("/pause", headers=_basic("admin", password))
        assert refused.json()["error"]["code"] == "csrf_rejected"
        accepted = await client.post(
            "/pause", headers={**_basic("admin", password), CSRF_HEADER: token}
        )
        assert accepted.status_code == 200, accepted.text
        # Bearer tokens keep working for programs, without CSRF.
        assert (await client.post("/resume", headers=ADMIN)).status_code == 200


async def test_none_mode_needs_no_sign_in_but_still_csrf(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(
        backend, queue_location, tmp_path, console_auth="none", roles={"local": Role.ADMIN}
    ) as admin:
        local = "http://127.0.0.1:8081"
        page = await admin.client.get(f"{local}/queues")
        assert page.status_code == 200
        assert "local (admin)" in page.text
        refused = await admin.client.post(f"{local}/admin/v1/pause")
        assert refused.json()["error"]["code"] == "csrf_rejected"
        accepted = await admin.client.post(
            f"{local}/admin/v1/pause", headers={CSRF_HEADER: csrf_of(page.text)}
        )
        assert accepted.status_code == 200
        # Addressed by another name (a rebound DNS name), nobody is signed in.
        assert (await admin.client.get(f"{ROOT}/queues")).status_code == 401


async def test_header_mode_reads_the_token_from_its_header(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, console_auth="header") as admin:
        header = {"x-longshore-admin-token": TOKENS["alice"]}
        assert (await admin.client.get("/health", headers=header)).status_code == 200
        assert (await admin.client.post("/pause", headers=header)).status_code == 200
        bad = await admin.client.get("/health", headers={"x-longshore-admin-token": "nope"})
        assert bad.status_code == 401


async def test_lists_are_paginated(console: FullAdmin) -> None:
    for index in range(55):
        await console.services.jobs.upsert(  # type: ignore[union-attr]
            JobDefinition(
                name=f"job-{index:03d}",
                source="git_tag",
                source_fields={"repo": "https://git.example.com/a.git", "tag": "v1"},
            )
        )
    await sign_in(console, "vic")
    first = (await console.client.get(f"{ROOT}/jobs")).text
    assert first.count('<tr><td><a href="/jobs/job-') == 50
    assert "1\u201350 of 55" in first
    second = (await console.client.get(f"{ROOT}/jobs?offset=50")).text
    assert second.count('<tr><td><a href="/jobs/job-') == 5
    assert "job-054" in second
    assert "job-054" not in first


async def test_the_tasks_page_counts_at_most_count_max_tasks(
    console: FullAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages_tasks, "COUNT_MAX", 3)
    monkeypatch.setattr(pages_tasks, "PAGE", 2)
    monkeypatch.setattr(pages, "PAGE", 2)
    for index in range(6):
        await console.services.queue.enqueue_many(
            [NewTask(handler="builtin.noop", queue="held", payload={"i": index})]
        )
    await sign_in(console, "vic")
    first = (await console.client.get(f"{ROOT}/tasks?state=ready")).text
    assert "1\u20132 of 3+" in first
    assert "offset=2" in first
    last = (await console.client.get(f"{ROOT}/tasks?state=ready&offset=2")).text
    assert "3\u20133 of 3+" in last  # the last page of the counted ones links no further
    assert "offset=4" not in last
    deep = await console.client.get(f"{ROOT}/tasks?state=ready&offset=4")
    assert deep.status_code == 400
    assert 'id="error-panel"' in deep.text
    assert "narrow the filter" in deep.text


async def test_pager_links_keep_filter_text_as_one_parameter(console: FullAdmin) -> None:
    for index in range(60):
        await console.services.queue.enqueue_many(
            [
                NewTask(
                    handler="builtin.noop", queue="held", payload={"note": f"a&state=dead {index}"}
                )
            ]
        )
    await sign_in(console, "vic")
    page = (await console.client.get(f"{ROOT}/tasks?query=a%26state%3Ddead")).text
    assert "1\u201350 of 60" in page
    assert "query=a%26state%3Ddead&amp;offset=50" in page
    assert "offset=50&amp;state" not in page
    assert "?query=a&amp;state" not in page


async def test_unstorable_text_in_a_filter_is_a_400_panel_not_a_500(console: FullAdmin) -> None:
    await sign_in(console, "vic")
    for path in ("/runs?job=a%00b", "/dead-letters?query=%00", "/audit?actor=%00"):
        response = await console.client.get(f"{ROOT}{path}")
        assert response.status_code == 400, (path, response.text)
        assert 'id="error-panel"' in response.text
    signed_in = await console.client.get(f"{ROOT}/sign-in?next=/a%0d%0aSet-Cookie:x")
    assert 'name="next" value="/"' in signed_in.text


async def test_the_yaml_tab_shows_a_definition_that_saves_back_unchanged(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        await _yaml_round_trip(admin)


async def _yaml_round_trip(console: FullAdmin) -> None:
    body = {
        "name": "nightly",
        "source": "git_tag",
        "repo": "https://git.example.com/team/a.git",
        "tag": "2024-01-31",
        "command": ["sh", "-c", "echo 'a: b' # not a comment"],
        "env": ["MODE=full"],
        "retries": 2,
        "resources": {"memoryMb": 256, "cpus": 0.5, "pidsLimit": 64},
        "params": [{"name": "count", "type": "integer", "default": 3, "overridable": True}],
    }
    saved = await console.client.post("/jobs", json=body, headers=ADMIN)
    assert saved.status_code == 201, saved.text
    before = saved.json()["job"]
    await sign_in(console, "alice")
    page = await console.client.get(f"{ROOT}/jobs/nightly/edit?view=yaml")
    assert page.status_code == 200
    found = re.search(r'<textarea name="yaml"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert found is not None
    text = html.unescape(found.group(1))
    assert "name: nightly\n" in text
    assert "revision" not in text
    again = await console.client.post(
        "/jobs", content=text, headers={**ADMIN, "content-type": "application/yaml"}
    )
    assert again.status_code == 200, again.text
    after = again.json()["job"]
    volatile = ("revision", "updatedAt", "updatedAtMs")
    assert {k: v for k, v in after.items() if k not in volatile} == {
        k: v for k, v in before.items() if k not in volatile
    }
    assert (await console.client.get(f"{ROOT}/jobs/new?view=xml")).status_code == 400
