"""Driving Debian's Chromium with Playwright for the console's browser tests.

Chromium is never downloaded: it is ``/usr/bin/chromium`` (``scripts/chromium-up`` installs
Debian's package), launched headless with a fresh profile directory. Without it a browser test
fails, naming what to install. :class:`Watch` records every console error, page error and
Content-Security-Policy violation of a page, so a test can assert there were none.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = (
    "/",
    "/jobs",
    "/runs",
    "/schedules",
    "/queues",
    "/tasks",
    "/dead-letters",
    "/workers",
    "/audit",
    "/settings",
    "/secrets",
    "/notifications",
)


def require_chromium() -> None:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(scripts/chromium-up, or apt-get install chromium)",
            pytrace=False,
        )


@contextlib.contextmanager
def browser(profile: Path, **options: Any) -> Iterator[Any]:
    """A Chromium browser context on a fresh profile in ``profile`` (``options`` go to
    ``launch_persistent_context``, e.g. ``http_credentials``)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            **options,
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


@dataclass
class Watch:
    """Every console error, page error and CSP violation seen on the pages watched."""

    problems: list[str] = field(default_factory=list)
    expect_refusals: bool = False
    """Set while a test provokes refused requests on purpose (Chromium logs each 4xx)."""
    approval: str = ""
    """What a prompt for the approval token is answered."""
    provoked: set[tuple[str, int]] = field(default_factory=set)
    """``(path, status)`` answers a test provokes on purpose (Chromium logs each as an
    error): these alone are not problems."""

    def attach(self, page: Any) -> Any:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("dialog", self._dialog)
        return page

    def _dialog(self, dialog: Any) -> None:
        if dialog.type == "prompt":
            dialog.accept(self.approval)
        else:
            dialog.accept()

    def _console(self, message: Any) -> None:
        text = message.text
        if message.type == "error" or re.search("Content.Security.Policy", text, re.I):
            status = _refused_status(text)
            path = urlsplit(str(message.location.get("url", ""))).path
            if status is not None and (self.expect_refusals or (path, status) in self.provoked):
                return
            self.problems.append(f"console {message.type}: {text} at {message.location}")

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def _refused_status(text: str) -> int | None:
    """The 4xx status of Chromium's report of a refused request, else ``None``."""
    found = re.match(
        r"Failed to load resource: the server responded with a status of (4\d\d)", text
    )
    return int(found.group(1)) if found else None


def screenshot(page: Any, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
