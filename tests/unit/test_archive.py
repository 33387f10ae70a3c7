"""Untrusted archives: hostile entries are refused by name and rule, good ones become a
normalised build context. Archives are built in memory with ``tarfile``."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobrunner.archive import (
    CONTEXT_MTIME,
    build_context_file,
    inspect_archive,
    write_build_context,
)
from jobrunner.config import SourceLimits
from jobrunner.errors import InvalidDefinition, SourceRejected, UnsafeArchive

LIMITS = SourceLimits()
DOCKERFILE = b"FROM scratch\nCOPY . /\n"


@dataclass
class E:
    """An entry to put in a test archive."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    mode: int = 0o644
    linkname: str = ""


def make_tar(*entries: E, gz: bool = False, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.mode = entry.mode
            info.linkname = entry.linkname
            info.uid, info.gid, info.uname, info.gname = 1000, 1000, "dev", "dev"
            info.mtime = 1_700_000_000
            if entry.type == tarfile.REGTYPE:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    data = raw.getvalue()
    return gzip.compress(data, mtime=0) if gz else data


def dockerfile(prefix: str = "") -> E:
    return E(f"{prefix}Dockerfile", DOCKERFILE)


def context_of(archive: bytes, subdir: str | None = None, **kwargs: object) -> tarfile.TarFile:
    out = io.BytesIO()
    write_build_context(io.BytesIO(archive), out, LIMITS, subdir, **kwargs)  # type: ignore[arg-type]
    out.seek(0)
    return tarfile.open(fileobj=out, mode="r:")


def refused(archive: bytes, limits: SourceLimits = LIMITS, subdir: str | None = None) -> str:
    """The UnsafeArchive message for ``archive``; also proves nothing was written."""
    out = io.BytesIO()
    with pytest.raises(UnsafeArchive) as caught:
        write_build_context(io.BytesIO(archive), out, limits, subdir)
    assert out.getvalue() == b"", "a refused archive must not produce any context bytes"
    return str(caught.value)


# --- good archives -------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_good_archive_becomes_a_normalised_context(gz: bool) -> None:
    archive = make_tar(
        E("app", type=tarfile.DIRTYPE, mode=0o700),
        E("app/run.sh", b"#!/bin/sh\necho hi\n", mode=0o4750),
        E("app/data.txt", b"data", mode=0o600),
        E("app/link", type=tarfile.SYMTYPE, linkname="data.txt"),
        dockerfile(),
        gz=gz,
    )
    context = context_of(archive)
    members = {m.name: m for m in context.getmembers()}
    assert set(members) == {"app", "app/run.sh", "app/data.txt", "app/link", "Dockerfile"}
    assert members["app/run.sh"].mode == 0o755, "exec bit kept, setuid dropped"
    assert members["app/data.txt"].mode == 0o644
    assert members["app"].mode == 0o755
    assert members["app/link"].issym()
    assert members["app/link"].linkname == "data.txt"
    for member in members.values():
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == CONTEXT_MTIME
    run_sh = context.extractfile("app/run.sh")
    assert run_sh is not None
    assert run_sh.read() == b"#!/bin/sh\necho hi\n"


def test_compression_is_detected_by_magic_bytes_not_by_name(tmp_path: Path) -> None:
    plain = tmp_path / "source.tar.gz"  # a misleading name: the bytes are a plain tar
    plain.write_bytes(make_tar(dockerfile()))
    assert inspect_archive(plain, LIMITS, None).compression == "none"
    zipped = tmp_path / "source.tar"
    zipped.write_bytes(make_tar(dockerfile(), gz=True))
    assert inspect_archive(zipped, LIMITS, None).compression == "gzip"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"BZh91AY&SY" + b"\0" * 600, "bzip2"),
        (b"\xfd7zXZ\x00" + b"\0" * 600, "xz"),
        (b"PK\x03\x04" + b"\0" * 600, "zip"),
        (b"just some text, not an archive" * 40, "not a gzip or tar archive"),
        (gzip.compress(b"gzip but not a tar" * 100), "not a tar archive"),
    ],
)
def test_other_formats_are_refused(payload: bytes, expected: str) -> None:
    assert expected in refused(payload)


def test_a_single_top_level_directory_is_stripped() -> None:
    archive = make_tar(
        E("repo-v1.2", type=tarfile.DIRTYPE),
        E("repo-v1.2/Dockerfile", DOCKERFILE),
        E("repo-v1.2/src/main.py", b"print(1)\n"),
        gz=True,
    )
    report = inspect_archive(io.BytesIO(archive), LIMITS, None)
    assert report.top_level == "repo-v1.2"
    assert report.context_root == "repo-v1.2"
    names = context_of(archive).getnames()
    assert "Dockerfile" in names
    assert "src/main.py" in names
    assert not any(name.startswith("repo-v1.2") for name in names)


def test_a_github_style_archive_with_a_global_pax_header_works() -> None:
    raw = io.BytesIO()
    with tarfile.open(
        fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "a" * 40}
    ) as tar:
        for name, data in (("proj-1.0/Dockerfile", DOCKERFILE), ("proj-1.0/x", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert sorted(context_of(raw.getvalue()).getnames()) == ["Dockerfile", "x"]


def test_leading_dot_slash_names_are_the_archive_root() -> None:
    archive = make_tar(E(".", type=tarfile.DIRTYPE), E("./Dockerfile", DOCKERFILE), E("./a", b"a"))
    assert sorted(context_of(archive).getnames()) == ["Dockerfile", "a"]


def test_path_is_taken_inside_the_single_top_level_directory() -> None:
    archive = make_tar(
        E("repo/README", b"r"),
        E("repo/svc/Dockerfile", DOCKERFILE),
        E("repo/svc/app.py", b"app"),
    )
    report = inspect_archive(io.BytesIO(archive), LIMITS, "svc")
    assert report.context_root == "repo/svc"
    assert sorted(context_of(archive, "svc").getnames()) == ["Dockerfile", "app.py"]


def test_path_is_taken_from_the_root_when_there_are_several_top_level_entries() -> None:
    archive = make_tar(E("README", b"r"), E("svc/Dockerfile", DOCKERFILE), E("svc/app.py", b"a"))
    assert sorted(context_of(archive, "svc/").getnames()) == ["Dockerfile", "app.py"]


def test_a_custom_dockerfile_name_is_found() -> None:
    archive = make_tar(E("build/Containerfile", DOCKERFILE), E("other", b""))
    report = inspect_archive(io.BytesIO(archive), LIMITS, None, dockerfile="build/Containerfile")
    assert report.dockerfile == "build/Containerfile"


def test_the_same_source_gives_the_same_context_bytes(tmp_path: Path) -> None:
    archive = make_tar(dockerfile(), E("a.sh", b"echo", mode=0o755), gz=True)
    first = build_context_file(io.BytesIO(archive), tmp_path, LIMITS, None)
    second = build_context_file(io.BytesIO(archive), tmp_path, LIMITS, None)
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.size == first.path.stat().st_size


# --- path and dockerfile settings ----------------------------------------------------------


@pytest.mark.parametrize("subdir", ["../x", "svc/../../x", "/svc", "svc\\..\\x"])
def test_a_path_escaping_the_archive_is_refused(subdir: str) -> None:
    archive = make_tar(E("svc/Dockerfile", DOCKERFILE), E("x/y", b""))
    with pytest.raises(InvalidDefinition) as caught:
        inspect_archive(io.BytesIO(archive), LIMITS, subdir)
    assert caught.value.field == "path"


def test_a_path_missing_from_the_archive_is_refused() -> None:
    archive = make_tar(E("repo/svc/Dockerfile", DOCKERFILE))
    with pytest.raises(SourceRejected, match="'nope' is not a directory"):
        inspect_archive(io.BytesIO(archive), LIMITS, "nope")


def test_a_path_naming_a_file_is_refused() -> None:
    archive = make_tar(E("Dockerfile", DOCKERFILE), E("file", b"f"))
    with pytest.raises(SourceRejected, match="not a directory"):
        inspect_archive(io.BytesIO(archive), LIMITS, "file")


def test_a_missing_dockerfile_is_refused() -> None:
    archive = make_tar(E("src/main.py", b""), E("README", b""))
    with pytest.raises(SourceRejected, match="no Dockerfile at 'Dockerfile'"):
        inspect_archive(io.BytesIO(archive), LIMITS, None)


def test_a_dockerfile_that_is_a_directory_or_a_link_is_refused() -> None:
    as_dir = make_tar(E("Dockerfile", type=tarfile.DIRTYPE), E("Dockerfile/x", b""), E("y", b""))
    with pytest.raises(SourceRejected, match="no Dockerfile"):
        inspect_archive(io.BytesIO(as_dir), LIMITS, None)
    as_link = make_tar(
        E("real", DOCKERFILE), E("Dockerfile", type=tarfile.SYMTYPE, linkname="real")
    )
    with pytest.raises(SourceRejected, match="no Dockerfile"):
        inspect_archive(io.BytesIO(as_link), LIMITS, None)


@pytest.mark.parametrize("name", ["../Dockerfile", "/etc/Dockerfile", ""])
def test_a_dockerfile_setting_escaping_the_context_is_refused(name: str) -> None:
    archive = make_tar(dockerfile(), E("x", b""))
    with pytest.raises(InvalidDefinition) as caught:
        inspect_archive(io.BytesIO(archive), LIMITS, None, dockerfile=name)
    assert caught.value.field == "dockerfile"


# --- hostile names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "a/b/../../../evil", ".."])
def test_names_with_dot_dot_are_refused(name: str) -> None:
    message = refused(make_tar(dockerfile(), E(name, b"pwned")))
    assert repr(name) in message
    assert "'..'" in message


@pytest.mark.parametrize("name", ["/etc/cron.d/evil", "//etc/passwd"])
def test_absolute_names_are_refused(name: str) -> None:
    message = refused(make_tar(dockerfile(), E(name, b"pwned")))
    assert repr(name) in message
    assert "absolute" in message


@pytest.mark.parametrize(
    ("name", "rule"),
    [("a\\..\\..\\evil", "backslash"), ("a\nb", "control character"), ("bad\udcff", "UTF-8")],
)
def test_names_with_tricky_characters_are_refused(name: str, rule: str) -> None:
    raw = io.BytesIO()
    with tarfile.open(
        fileobj=raw, mode="w", format=tarfile.GNU_FORMAT, errors="surrogateescape"
    ) as tar:
        info = tarfile.TarInfo(name)
        tar.addfile(info, io.BytesIO(b""))
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
    assert rule in refused(raw.getvalue())


def test_a_pax_header_cannot_rename_an_entry_to_a_bad_name() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("harmless.txt")
        info.pax_headers = {"path": "../../etc/evil"}
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
    assert "'../../etc/evil'" in refused(raw.getvalue())


@pytest.mark.parametrize(
    ("first", "second"),
    [("a/b", "a/b"), ("a/b", "./a//b"), ("dir", "dir/")],
)
def test_duplicate_names_are_refused(first: str, second: str) -> None:
    archive = make_tar(dockerfile(), E(first, b"1"), E(second, b"2"))
    assert "duplicate" in refused(archive)


def test_an_entry_inside_a_symlink_is_refused() -> None:
    # The classic two-step: a link to somewhere, then a file written "through" it.
    archive = make_tar(
        dockerfile(),
        E("sub", type=tarfile.DIRTYPE),
        E("sub/l", type=tarfile.SYMTYPE, linkname="."),
        E("sub/l/x", b"through the link"),
    )
    assert "inside 'sub/l', which is a symlink" in refused(archive)


def test_a_file_shadowing_a_directory_is_refused() -> None:
    archive = make_tar(dockerfile(), E("a/b", b"1"), E("a", b"now a file"))
    assert "other entries have it as their directory" in refused(archive)


# --- links and special files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "target", "rule"),
    [
        ("abs", "/etc/passwd", "absolute path"),
        ("up", "../../etc/passwd", "outside the archive"),
        ("deep/up", "../../x", "outside the archive"),
    ],
)
def test_symlinks_pointing_outside_are_refused(name: str, target: str, rule: str) -> None:
    message = refused(make_tar(dockerfile(), E(name, type=tarfile.SYMTYPE, linkname=target)))
    assert repr(name) in message
    assert rule in message


def test_a_symlink_escaping_through_another_symlink_is_refused() -> None:
    # Lexically "d/x -> up/.." is "d", inside; but d/up is the root, so d/x is the root's parent.
    archive = make_tar(
        dockerfile(),
        E("d", type=tarfile.DIRTYPE),
        E("d/up", type=tarfile.SYMTYPE, linkname=".."),
        E("d/x", type=tarfile.SYMTYPE, linkname="up/.."),
    )
    assert "'d/x': symbolic link to 'up/..' points outside the archive" in refused(archive)


def test_a_symlink_leaving_the_build_context_is_refused() -> None:
    archive = make_tar(
        E("repo/svc/Dockerfile", DOCKERFILE),
        E("repo/secrets/key", b"k"),
        E("repo/svc/key", type=tarfile.SYMTYPE, linkname="../secrets/key"),
    )
    # With the whole repository as the context the link stays inside: fine.
    inspect_archive(io.BytesIO(archive), LIMITS, None, dockerfile="svc/Dockerfile")
    message = refused(archive, subdir="svc")
    assert "'repo/svc/key'" in message
    assert "outside the build context" in message


def test_a_symlink_loop_is_refused() -> None:
    archive = make_tar(
        dockerfile(),
        E("a", type=tarfile.SYMTYPE, linkname="b/x"),
        E("b", type=tarfile.SYMTYPE, linkname="a/y"),
    )
    assert "points outside" in refused(archive)


@pytest.mark.parametrize("target", ["/etc/shadow", "../outside", "Dockerfile"])
def test_hardlinks_are_refused_wherever_they_point(target: str) -> None:
    message = refused(make_tar(dockerfile(), E("hl", type=tarfile.LNKTYPE, linkname=target)))
    assert "'hl'" in message
    assert "hard links are not allowed" in message
    assert target in message


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        (tarfile.CHRTYPE, "device nodes"),
        (tarfile.BLKTYPE, "device nodes"),
        (tarfile.FIFOTYPE, "fifos"),
        (tarfile.CONTTYPE, "contiguous"),
    ],
)
def test_special_files_are_refused(kind: bytes, rule: str) -> None:
    message = refused(make_tar(dockerfile(), E("dev/thing", type=kind)))
    assert "'dev/thing'" in message
    assert rule in message


# --- caps ----------------------------------------------------------------------------------


def test_too_many_entries_are_refused() -> None:
    archive = make_tar(dockerfile(), *(E(f"f{i}", b"") for i in range(20)))
    message = refused(archive, SourceLimits(max_entries=10))
    assert "more than 10 entries" in message
    assert "'f9'" in message


def test_a_file_over_the_size_cap_is_refused() -> None:
    archive = make_tar(dockerfile(), E("big", b"x" * 101))
    message = refused(archive, SourceLimits(max_file_bytes=100))
    assert "'big'" in message
    assert "at most 100 bytes" in message


def test_files_over_the_total_cap_are_refused() -> None:
    archive = make_tar(dockerfile(), *(E(f"f{i}", b"x" * 60) for i in range(5)))
    message = refused(archive, SourceLimits(max_total_bytes=200))
    assert "total size cap" in message


class CountingReader(io.BytesIO):
    """A source that counts how much of the compressed input was read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def gzip_of_zeros_file(size: int) -> bytes:
    """A valid .tar.gz holding one file of ``size`` zero bytes, built without compressing them
    all: after a full flush deflate restarts, so one compressed megabyte of zeros repeats."""
    header = tarfile.TarInfo("bomb")
    header.size = size
    head = header.tobuf(format=tarfile.GNU_FORMAT)
    chunk = bytes(1 << 20)
    tail = bytes(1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)]
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    parts.append(block * (size >> 20))
    ending = compressor.compress(tail) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(size >> 20):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(tail, crc)
    total = len(head) + size + len(tail)
    parts.append(ending[:-8] + struct.pack("<II", crc, total & 0xFFFFFFFF))
    return b"".join(parts)


def test_a_gzip_bomb_is_stopped_before_it_is_inflated() -> None:
    bomb = gzip_of_zeros_file(1 << 30)  # 1 GiB of zeros, about 1 MiB compressed
    assert len(bomb) < 4 << 20
    source = CountingReader(bomb)
    out = io.BytesIO()
    with pytest.raises(UnsafeArchive) as caught:
        write_build_context(
            source,
            out,
            SourceLimits(max_file_bytes=2 << 30, max_total_bytes=64 << 20),
            None,
        )
    assert "'bomb'" in str(caught.value)
    assert "total size cap" in str(caught.value)
    assert source.consumed < len(bomb) // 10, "the bomb must be refused, not inflated"
    assert out.getvalue() == b""


def test_a_bomb_of_chained_long_name_headers_is_stopped_while_inflating() -> None:
    # Long-name headers are metadata, not entries or file data, so only the cap on the
    # inflated stream itself can stop 64 MiB of them.
    one_mib = 1 << 20
    header = tarfile.TarInfo("././@LongLink")
    header.type = tarfile.GNUTYPE_LONGNAME
    header.size = one_mib
    blocks = [header.tobuf(format=tarfile.GNU_FORMAT) + b"a" * one_mib] * 64
    raw = b"".join(blocks) + make_tar(dockerfile())
    bomb = gzip.compress(raw, compresslevel=1)
    source = CountingReader(bomb)
    with pytest.raises(UnsafeArchive, match="inflates to more than"):
        inspect_archive(
            source,
            SourceLimits(max_entries=10, max_total_bytes=one_mib),
            None,
        )
    assert source.consumed < len(bomb)


def test_an_oversized_pax_header_is_refused_before_it_is_read() -> None:
    header = tarfile.TarInfo("PaxHeader/x")
    header.type = tarfile.XHDTYPE
    header.size = 64 << 20
    archive = header.tobuf(format=tarfile.USTAR_FORMAT) + bytes(1024)
    assert "extended header of 67108864 bytes" in refused(archive)


def test_a_truncated_archive_is_refused() -> None:
    archive = make_tar(dockerfile(), E("big", b"x" * 5000), gz=True)
    assert "corrupt or truncated" in refused(archive[: len(archive) // 2])


def pax_sparse_tar(real_size: int, *, gz: bool = True) -> bytes:
    """A tar whose one file is a PAX (format 1.0) sparse file: a few hundred bytes that
    tarfile would expand to ``real_size`` bytes of mostly zeros."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
        # The sparse map (one region: 512 bytes of data at the end) precedes the data.
        sparse_map = f"1\n{real_size - 512}\n512\n".encode().ljust(512, b"\0")
        data = sparse_map + b"x" * 512
        info = tarfile.TarInfo("GNUSparseFile.0/big")
        info.size = len(data)
        info.pax_headers = {
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": "big",
            "GNU.sparse.realsize": str(real_size),
        }
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0) if gz else raw.getvalue()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_pax_sparse_file_is_refused_before_it_is_expanded(gz: bool) -> None:
    archive = pax_sparse_tar(200 << 20, gz=gz)  # 200 MiB from a few hundred bytes
    assert len(archive) < 1024 or not gz
    message = refused(archive)
    assert "'big'" in message
    assert "sparse files are not allowed" in message


def test_the_default_total_cap_fits_a_build_context() -> None:
    assert SourceLimits().max_total_bytes == 256 << 20
