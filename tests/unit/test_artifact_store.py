"""Artifacts are stored by the SHA256 of their bytes, atomically, within their caps; names from
outside never choose a path; a container's tar of artifacts is treated as hostile."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobrunner.artifact_collection import collect_artifacts
from jobrunner.engine import ArtifactLimits
from store.artifacts import ArtifactNotFound, ArtifactStore, ArtifactTooLarge, BlobRef


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(store: ArtifactStore) -> list[Path]:
    return list((store.root / "tmp").iterdir())


def test_a_blob_is_stored_under_its_sha256(store: ArtifactStore) -> None:
    data = b"hello artifacts\n"
    ref = store.put_chunks([data[:5], data[5:]])
    assert ref == BlobRef(sha256=sha(data), size=len(data))
    assert store.path(ref.sha256) == store.root / "sha256" / ref.sha256[:2] / ref.sha256
    assert store.exists(ref.sha256)
    assert store.size(ref.sha256) == len(data)
    with store.open(ref.sha256) as blob:
        assert blob.read() == data
    assert leftovers(store) == []


def test_storing_the_same_bytes_twice_gives_the_same_blob(store: ArtifactStore) -> None:
    first = store.put_file(io.BytesIO(b"same"))
    second = store.put_file(io.BytesIO(b"same"))
    assert first == second
    assert len(list((store.root / "sha256").rglob("*"))) == 2  # one fan-out dir, one blob


def test_a_blob_over_its_cap_leaves_nothing_behind(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactTooLarge, match="10 bytes"):
        store.put_chunks([b"12345", b"678901"], max_bytes=10)
    assert leftovers(store) == []
    assert not store.exists(sha(b"12345678901"))
    assert store.put_chunks([b"1234567890"], max_bytes=10).size == 10


def test_a_failing_source_leaves_nothing_behind(store: ArtifactStore) -> None:
    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("source went away")

    with pytest.raises(OSError, match="went away"):
        store.put_chunks(broken())
    assert leftovers(store) == []


async def test_async_streams_iterables_and_files_are_accepted(store: ArtifactStore) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c"):
            yield part

    assert (await store.put_stream(chunks())).sha256 == sha(b"abc")
    assert (await store.put_stream([b"ab", b"c"])).sha256 == sha(b"abc")
    assert (await store.put_stream(io.BytesIO(b"abc"))).sha256 == sha(b"abc")
    with pytest.raises(ArtifactTooLarge):
        await store.put_stream(chunks(), max_bytes=2)
    assert leftovers(store) == []


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "/etc/passwd", "ABCDEF" + "0" * 58, "0" * 63, "0" * 65, "", "g" * 64],
)
def test_names_that_are_not_a_sha256_are_refused(store: ArtifactStore, name: str) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        store.path(name)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        store.open(name)


def test_a_missing_blob_is_not_found(store: ArtifactStore) -> None:
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(ArtifactNotFound):
        store.open(missing)
    with pytest.raises(ArtifactNotFound):
        store.size(missing)


# --- collecting a container's (untrusted) tar of artifacts ---------------------------------


def tar_stream(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Iterator[bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    data = buf.getvalue()
    return iter([data[i : i + 777] for i in range(0, len(data), 777)])


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def test_regular_files_are_collected_with_name_size_and_sha256(store: ArtifactStore) -> None:
    stream = tar_stream(
        [
            special("artifacts", tarfile.DIRTYPE),
            ("artifacts/report.txt", b"ok\n"),
            special("artifacts/sub", tarfile.DIRTYPE),
            ("artifacts/sub/data.bin", bytes(range(256)) * 10),
            ("artifacts/empty", b""),
        ]
    )
    collected, problems = collect_artifacts(stream, store, ArtifactLimits(), root="artifacts")
    assert problems == ()
    assert [(a.name, a.size) for a in collected] == [
        ("report.txt", 3),
        ("sub/data.bin", 2560),
        ("empty", 0),
    ]
    for artifact in collected:
        with store.open(artifact.sha256) as blob:
            assert sha(blob.read()) == artifact.sha256


def test_links_devices_and_escaping_names_are_skipped(store: ArtifactStore) -> None:
    stream = tar_stream(
        [
            special("artifacts/link", tarfile.SYMTYPE, "/etc/shadow"),
            special("artifacts/hard", tarfile.LNKTYPE, "artifacts/x"),
            special("artifacts/dev", tarfile.CHRTYPE),
            special("artifacts/fifo", tarfile.FIFOTYPE),
            ("artifacts/../../escape", b"x"),
            ("/abs/artifacts/x", b"x"),
            ("elsewhere/x", b"x"),
            ("artifacts/new\nline", b"x"),
            ("artifacts/fine", b"fine"),
            ("artifacts/fine", b"second copy"),
        ]
    )
    collected, problems = collect_artifacts(stream, store, ArtifactLimits(), root="artifacts")
    assert [a.name for a in collected] == ["fine"]
    with store.open(collected[0].sha256) as blob:
        assert blob.read() == b"fine"
    assert len(problems) == 9


def test_caps_on_count_file_size_and_total(store: ArtifactStore) -> None:
    files = [(f"artifacts/f{n}", b"x" * 100) for n in range(5)]
    collected, problems = collect_artifacts(
        tar_stream(files), store, ArtifactLimits(max_files=3), root="artifacts"
    )
    assert [a.name for a in collected] == ["f0", "f1", "f2"]
    assert problems == ("more than 3 files: collection stopped",)

    big = [("artifacts/big", b"y" * 1000), ("artifacts/small", b"z")]
    collected, problems = collect_artifacts(
        tar_stream(big), store, ArtifactLimits(max_file_bytes=999), root="artifacts"
    )
    assert [a.name for a in collected] == ["small"]
    assert "over the cap of 999 per file" in problems[0]

    collected, problems = collect_artifacts(
        tar_stream(files), store, ArtifactLimits(max_total_bytes=250), root="artifacts"
    )
    assert [a.name for a in collected] == ["f0", "f1"]
    assert "collection stopped at 'f2'" in problems[0]


def test_a_truncated_archive_keeps_what_was_complete(store: ArtifactStore) -> None:
    data = b"".join(tar_stream([("artifacts/a", b"a" * 600), ("artifacts/b", b"b" * 5000)]))
    collected, problems = collect_artifacts(
        iter([data[:3000]]), store, ArtifactLimits(), root="artifacts"
    )
    assert [a.name for a in collected] == ["a"]
    assert problems
    assert "collection stopped" in problems[0]
    assert leftovers(store) == []


# --- removal: retention and crash leftovers --------------------------------------------------


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look last written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_discard_frees_an_old_blob_and_spares_a_young_one(store: ArtifactStore) -> None:
    old = store.put_chunks([b"old bytes"])
    young = store.put_chunks([b"young bytes"])
    age(store.path(old.sha256), 3600)

    freed = store.discard(old.sha256, written_before=time.time() - 60)
    kept = store.discard(young.sha256, written_before=time.time() - 60)
    absent = store.discard(old.sha256, written_before=time.time())

    assert (freed, kept, absent) == (old.size, 0, 0)
    assert not store.exists(old.sha256)
    assert store.exists(young.sha256)
    assert leftovers(store) == []


def test_a_blob_written_again_during_discard_survives(store: ArtifactStore) -> None:
    ref = store.put_chunks([b"same bytes"])
    age(store.path(ref.sha256), 3600)
    # A writer replaced the blob with the same bytes just now: it is young again.
    store.put_chunks([b"same bytes"])

    assert store.discard(ref.sha256, written_before=time.time() - 60) == 0
    with store.open(ref.sha256) as blob:
        assert blob.read() == b"same bytes"


def test_abandoned_temporary_blobs_go_and_a_live_writers_stays(store: ArtifactStore) -> None:
    live = store.writer()
    live.write(b"being written")
    crashed = store.root / "tmp" / "blob-crashed"
    crashed.write_bytes(b"x" * 1000)
    age(crashed, 3600)
    age(next(p for p in leftovers(store) if p != crashed), 3600)

    files, size = store.remove_abandoned(older_than=time.time() - 60)

    assert (files, size) == (1, 1000)
    assert not crashed.exists()
    ref = live.commit()  # the live writer was not disturbed
    assert store.exists(ref.sha256)


def test_a_recent_temporary_blob_is_left_for_its_writer(store: ArtifactStore) -> None:
    fresh = store.root / "tmp" / "blob-fresh"
    fresh.write_bytes(b"x")

    assert store.remove_abandoned(older_than=time.time() - 60) == (0, 0)
    assert fresh.exists()


def test_a_blob_left_aside_by_an_interrupted_discard_is_restored(store: ArtifactStore) -> None:
    ref = store.put_chunks([b"aside"])
    aside = store.root / "tmp" / f"discard-{ref.sha256}-0000"
    os.rename(store.path(ref.sha256), aside)

    store.remove_abandoned(older_than=time.time() + 1)

    assert store.exists(ref.sha256)
    assert leftovers(store) == []


def test_a_name_that_is_not_utf8_is_kept_with_its_bad_bytes_escaped(store: ArtifactStore) -> None:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, errors="surrogateescape"
    ) as tar:
        info = tarfile.TarInfo("artifacts/bad\udcffname.txt")  # the byte 0xff on disk
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    assert b"bad\xffname" in buffer.getvalue()
    collected, problems = collect_artifacts(
        iter([buffer.getvalue()]), store, ArtifactLimits(), root="artifacts"
    )
    assert problems == ()
    [artifact] = collected
    assert artifact.name == "bad\\xffname.txt"
    artifact.name.encode("utf-8")  # storable: no lone surrogate left
