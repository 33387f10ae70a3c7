"""The data directory is private: 0700 directories and 0600 files, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from service.datadir import restrict_new_files, secure_data_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_loose_files_and_directories_are_tightened_and_counted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "events" / "segments").mkdir(parents=True)
    (data / "events" / "segments").chmod(0o755)
    (data / "events").chmod(0o775)
    (data / "longshore.db").write_text("db")
    (data / "longshore.db").chmod(0o644)
    (data / "events" / "segments" / "000001.jsonl").write_text("{}")
    (data / "events" / "segments" / "000001.jsonl").chmod(0o664)
    (data / "already-private").write_text("x")
    (data / "already-private").chmod(0o600)
    (data / "script").write_text("#!/bin/sh\n")
    (data / "script").chmod(0o755)

    data.chmod(0o755)

    assert secure_data_dir(data) == 6
    assert mode(data) == 0o700
    assert mode(data / "events") == 0o700
    assert mode(data / "events" / "segments") == 0o700
    assert mode(data / "longshore.db") == 0o600
    assert mode(data / "events" / "segments" / "000001.jsonl") == 0o600
    assert mode(data / "already-private") == 0o600
    assert mode(data / "script") == 0o700, "the owner's own bits are kept"
    assert secure_data_dir(data) == 0, "a second pass changes nothing"


def test_links_are_never_followed_and_the_token_file_is_left_to_its_own_check(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (data / "link").symlink_to(outside)
    token = data / "admin-token"
    token.write_text("secret\n")
    token.chmod(0o644)

    secure_data_dir(data)
    assert mode(outside) == 0o644
    assert mode(token) == 0o644, "a leaked token is refused at start, not silently tightened"


def test_directories_configured_outside_the_data_dir_are_tightened_too(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    events.chmod(0o755)
    (events / "x").write_text("x")
    (events / "x").chmod(0o644)
    secure_data_dir(tmp_path / "data", [events, tmp_path / "missing"])
    assert mode(events) == 0o700
    assert mode(events / "x") == 0o600
    assert mode(tmp_path / "data") == 0o700


def test_new_files_are_private_whatever_the_umask_was(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        restrict_new_files()
        (tmp_path / "new").write_text("x")
        (tmp_path / "newdir").mkdir()
    finally:
        os.umask(previous)
    assert mode(tmp_path / "new") == 0o600
    assert mode(tmp_path / "newdir") == 0o700
