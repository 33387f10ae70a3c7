"""The build journal: the images a build's steps make are journaled as the build streams,
and a journal is left to a sweep only when no process holds it (pure file logic)."""

from __future__ import annotations

from pathlib import Path

from jobrunner.docker_engine.build_stream import BuildProgress, LogTail
from jobrunner.docker_engine.images import BuildJournal

STREAM = [
    "Step 1/3 : FROM busybox\n",
    " ---> aaaaaaaaaaaa\n",
    "Step 2/3 : COPY job.sh /job.sh\n",
    " ---> Using cache\n",
    " ---> bbbbbbbbbbbb\n",
    "Step 3/3 : RUN echo hi\n",
    " ---> Running in cccccccccccc\n",
    "Removing intermediate container cccccccccccc\n",
    " ---> dddddddddddd\n",
]


def test_the_images_a_build_makes_are_journaled_as_they_stream(tmp_path: Path) -> None:
    journal = BuildJournal(tmp_path / "builds")
    entry = journal.open()
    assert entry is not None
    progress = BuildProgress(log=LogTail(4096), on_created=entry.note)
    for line in STREAM:
        progress.read({"stream": line})
    # Not the base image (FROM) nor the one taken from the cache: only what this build made.
    assert progress.created == ["dddddddddddd"]
    assert entry.path.read_text().split() == ["dddddddddddd"]
    # While the build holds it, no sweep takes it.
    assert list(journal.left()) == []
    entry.close()
    assert not entry.path.exists()
    assert list(journal.left()) == []


def test_a_journal_its_build_left_is_swept_once(tmp_path: Path) -> None:
    journal = BuildJournal(tmp_path / "builds")
    entry = journal.open()
    assert entry is not None
    entry.note("eeeeeeeeeeee")
    entry.note("ffffffffffff")
    entry.keep = True
    entry.close()
    assert [images for _, images in journal.left()] == [["eeeeeeeeeeee", "ffffffffffff"]]
    assert list(journal.left()) == []


def test_no_directory_no_journal() -> None:
    journal = BuildJournal(None)
    assert journal.open() is None
    assert list(journal.left()) == []
