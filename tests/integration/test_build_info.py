"""What ``GET /health`` reports as the build: the image's variables first, else the
checkout's revision (read with the real git binary) and the installed distribution's
metadata."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

from service.build_info import build_info, checkout_commit


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def test_the_image_build_variables_win() -> None:
    info = build_info(
        {"LONGSHORE_BUILD_COMMIT": "0123abcd" * 5, "LONGSHORE_BUILD_TIME": "2026-01-02T03:04:05Z"}
    )
    assert (info.commit, info.build_time) == ("0123abcd" * 5, "2026-01-02T03:04:05Z")
    assert info.version


def test_without_them_the_build_is_read_from_the_checkout_and_the_installation() -> None:
    info = build_info({})
    root = Path(__file__).resolve().parents[2]
    assert info.commit == git(root, "rev-parse", "HEAD")  # the tests run from a checkout
    assert datetime.fromisoformat(info.build_time).tzinfo is not None


def test_a_checkout_commit_is_read_with_a_clean_environment(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git(tmp_path, "add", "a.txt")
    git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "first",
    )
    assert checkout_commit(tmp_path) == git(tmp_path, "rev-parse", "HEAD")
    assert checkout_commit(tmp_path / "missing") == ""
    empty = tmp_path / "not-a-checkout"
    empty.mkdir()
    assert checkout_commit(empty) == ""
