"""File downloads for the admin API: streamed, with a length, a file name and byte ranges.

:func:`parse_range` reads a ``Range`` header (RFC 9110 §14) against a file's size: a single
range ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n``. It is a pure function, so the rules are
tested without HTTP. :func:`file_response` turns a file path into the response: ``200`` with
the whole file, ``206`` with ``Content-Range`` for a satisfiable range, or ``416`` (with
``Content-Range: bytes */<size>`` and the API's error envelope) for an unsatisfiable one.

What is deliberately not done, each allowed by RFC 9110:

- several ranges (``bytes=0-1,5-6``) would need a ``multipart/byteranges`` body; the header
  is ignored instead and the whole file sent (a client that asked for ranges still gets
  correct bytes);
- a header that is not valid ``bytes=`` syntax, or names another unit, is ignored the
  same way;
- with ``If-Range`` naming another entity tag than the file's, the range is ignored (the
  client's partial copy is of another file).

The file is opened before the response starts, so a missing file raises
``FileNotFoundError`` in the route (a 404 there), never a truncated 200. Reads run in worker
threads in chunks of :data:`CHUNK_BYTES`; memory stays constant whatever the file's size.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import quote

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from admin.errors import RangeNotSatisfiable, envelope

__all__ = [
    "CHUNK_BYTES",
    "ByteRange",
    "content_disposition",
    "file_response",
    "parse_range",
]

CHUNK_BYTES: Final = 64 * 1024
"""How much one read (and one body chunk) holds."""

_RANGE: Final = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True, kw_only=True, slots=True)
class ByteRange:
    """The bytes ``start`` to ``end`` (both inclusive) of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` value of a 206 response."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range ``header`` asks for in a file of ``size`` bytes.

    Returns ``None`` when the whole file should be sent: no header, another unit, invalid
    syntax, or several ranges (see the module docstring). ``bytes=a-b`` is clamped to the
    file (``b`` past the end means the end); ``bytes=a-`` is ``a`` to the end; ``bytes=-n``
    is the last ``n`` bytes (the whole file when it is shorter). Raises
    :class:`RangeNotSatisfiable` when ``a`` is at or past the end of the file (every range
    of an empty file) or ``n`` is 0.
    """
    if size < 0:
        raise ValueError(f"size must not be negative, got {size}")
    if not header or not header.strip():
        return None
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None  # "bytes=-" is not a range
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header, size)
        return ByteRange(start=max(size - suffix, 0), end=size - 1, size=size)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: last before first
    if start >= size:
        raise RangeNotSatisfiable(header, size)
    end = size - 1 if not last else min(int(last), size - 1)
    return ByteRange(start=start, end=end, size=size)


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` safe for any client: an ASCII ``filename`` (other
    characters replaced by ``_``) and, when that differs, the exact name as ``filename*``
    (RFC 6266). Directory parts are dropped; an empty name becomes ``download``."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        name = "download"
    ascii_name = _SAFE_NAME.sub("_", name)
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def file_response(
    request: Request,
    path: Path | str,
    *,
    filename: str,
    media_type: str = "application/octet-stream",
    etag: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The file at ``path`` as a download honouring ``request``'s ``Range`` header.

    ``200`` (whole file) or ``206`` (one range), streamed, with ``Content-Length``,
    ``Accept-Ranges: bytes``, ``Content-Disposition: attachment`` naming ``filename`` and,
    when given, ``ETag`` (quoted here; ``If-Range`` is compared against it). ``416`` with
    ``Content-Range: bytes */<size>`` and the error envelope when the range selects nothing.
    Raises ``FileNotFoundError`` (and other ``OSError``) if the file cannot be opened.
    """
    source: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by the body or the 416 path)
    try:
        size = os.fstat(source.fileno()).st_size
        out = {
            "accept-ranges": "bytes",
            "content-disposition": content_disposition(filename),
            **(headers or {}),
        }
        quoted_etag = None if etag is None else f'"{etag}"'
        if quoted_etag is not None:
            out["etag"] = quoted_etag
        header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if header and if_range is not None and if_range.strip() != quoted_etag:
            header = None  # the client's partial copy is of another version
        try:
            wanted = parse_range(header, size)
        except RangeNotSatisfiable as exc:
            source.close()
            request_id = str(getattr(request.state, "request_id", ""))
            return JSONResponse(
                envelope(request_id, exc.code, exc.message),
                status_code=416,
                headers={"content-range": f"bytes */{size}", "accept-ranges": "bytes"},
            )
        start, length, status = 0, size, 200
        if wanted is not None:
            start, length, status = wanted.start, wanted.length, 206
            out["content-range"] = wanted.content_range
        out["content-length"] = str(length)
        return StreamingResponse(
            _chunks(source, start, length),
            status_code=status,
            media_type=media_type,
            headers=out,
            # Also closes the file when the body never started (closing twice is harmless).
            background=BackgroundTask(source.close),
        )
    except BaseException:
        source.close()
        raise


async def _chunks(source: BinaryIO, start: int, length: int) -> AsyncIterator[bytes]:
    """``length`` bytes of ``source`` from ``start``, read in worker threads; closes it."""
    try:
        if start:
            await anyio.to_thread.run_sync(source.seek, start)
        remaining = length
        while remaining > 0:
            chunk = await anyio.to_thread.run_sync(source.read, min(CHUNK_BYTES, remaining))
            if not chunk:
                # The file shrank under us: end short rather than pad; the client sees a
                # body shorter than Content-Length and knows the download failed.
                return
            remaining -= len(chunk)
            yield chunk
    finally:
        source.close()
