"""Collecting a container's artifacts: regular files out of an untrusted tar stream.

The engine hands over the tar of ``artifacts_path`` as a stream of chunks (``get_archive``);
it is read once, in stream mode, never held in memory, and each regular file with a safe
name goes into the content-addressed ``ArtifactStore``. Nothing in the tar is trusted: names
are checked component by component, links/devices/FIFOs are skipped, and caps bound the
count, each file, the total and even the raw bytes read (headers included).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from jobrunner.engine import ArtifactLimits, CollectedArtifact
from store.artifacts import ArtifactStore, ArtifactTooLarge


class _ChunkReader:
    """A read-only file over an iterator of chunks that refuses to read past ``limit``."""

    def __init__(self, chunks: Iterator[bytes], limit: int) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._read = 0
        self._limit = limit

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._read += len(data)
        if self._read > self._limit:
            raise ArtifactTooLarge(f"the artifacts archive is larger than {self._limit} bytes")
        return data


def _artifact_name(member_name: str, root: str) -> str | None:
    """The name of a tar entry relative to ``artifacts_path`` ("" for the directory itself),
    or ``None`` when the entry is outside it or its name is unsafe."""
    parts = [part for part in member_name.split("/") if part not in ("", ".")]
    if not parts or parts[0] != root:
        return None
    rest = parts[1:]
    if any(part == ".." for part in rest) or member_name.startswith("/"):
        return None
    # A name that is not UTF-8 arrives with its bad bytes as lone surrogates, which no
    # record can hold: keep it, with each such byte written as a visible \xNN escape.
    name = "/".join(rest).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if len(name) > 1024 or any(ord(char) < 32 or ord(char) == 127 for char in name):
        return None
    return name


def collect_artifacts(
    chunks: Iterator[bytes], store: ArtifactStore, limits: ArtifactLimits, *, root: str
) -> tuple[tuple[CollectedArtifact, ...], tuple[str, ...]]:
    """Store the regular files of an (untrusted) tar stream of ``artifacts_path``.

    The tar is read once, in stream mode, never held in memory; ``root`` is the directory's
    own name, the first component of every entry. Only regular files with safe names are
    kept; links, devices and anything else are skipped and reported. Caps: at most
    ``max_files`` files, each at most ``max_file_bytes`` (bigger ones are skipped), all
    together at most ``max_total_bytes`` (collection stops there), and the raw archive read
    is bounded too. Returns the files stored and the problems met.
    """
    collected: list[CollectedArtifact] = []
    problems: list[str] = []
    seen: set[str] = set()
    total = 0
    # Room for the headers (and padding) of every allowed file besides the data itself.
    reader = _ChunkReader(
        chunks, limits.max_total_bytes + (limits.max_files + 16) * 3 * 1024 + 1024 * 1024
    )
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = _artifact_name(member.name, root)
                if name is None:
                    problems.append(f"skipped an entry with an unsafe name: {member.name!r}")
                    continue
                if member.isdir():
                    continue
                if not member.isreg() or member.issparse():
                    problems.append(f"skipped {name!r}: not a regular file")
                    continue
                if name in seen:
                    problems.append(f"skipped {name!r}: a second entry of the same name")
                    continue
                if len(collected) >= limits.max_files:
                    problems.append(f"more than {limits.max_files} files: collection stopped")
                    break
                if member.size > limits.max_file_bytes:
                    problems.append(
                        f"skipped {name!r}: {member.size} bytes, over the cap of "
                        f"{limits.max_file_bytes} per file"
                    )
                    continue
                if total + member.size > limits.max_total_bytes:
                    problems.append(
                        f"over {limits.max_total_bytes} bytes in all: collection stopped "
                        f"at {name!r}"
                    )
                    break
                data = tar.extractfile(member)
                assert data is not None  # a regular file always has data
                ref = store.put_file(data, max_bytes=member.size)
                seen.add(name)
                total += ref.size
                collected.append(CollectedArtifact(name=name, size=ref.size, sha256=ref.sha256))
    except ArtifactTooLarge as exc:
        problems.append(f"collection stopped: {exc}")
    except tarfile.TarError as exc:
        problems.append(f"collection stopped: unreadable archive ({exc})")
    return tuple(collected), tuple(problems)
