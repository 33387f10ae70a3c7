"""Downloads honour one byte range as RFC 9110 says (206, or 416 when it selects nothing),
send the whole file for anything they do not support, and name the file safely."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from admin.downloads import (
    CHUNK_BYTES,
    ByteRange,
    content_disposition,
    file_response,
    parse_range,
)
from admin.errors import RangeNotSatisfiable

# --- parse_range --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-9", 0, 9),
        ("bytes=2-5", 2, 5),
        ("bytes=5-", 5, 9),
        ("bytes=9-", 9, 9),
        ("bytes=3-1000", 3, 9),  # past the end: up to the end
        ("bytes=-3", 7, 9),
        ("bytes=-10", 0, 9),
        ("bytes=-1000", 0, 9),  # longer than the file: the whole file
        (" Bytes = 1 - 2 ", 1, 2),  # unit is case-insensitive, spaces tolerated
    ],
)
def test_a_single_range_selects_the_bytes_it_names(header: str, start: int, end: int) -> None:
    assert parse_range(header, 10) == ByteRange(start=start, end=end, size=10)


def test_a_range_knows_its_length_and_content_range() -> None:
    wanted = parse_range("bytes=2-5", 10)
    assert wanted is not None
    assert wanted.length == 4
    assert wanted.content_range == "bytes 2-5/10"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "items=0-5",  # another unit
        "bytes=0-1,4-5",  # several ranges: not supported, the whole file is sent
        "bytes=a-b",
        "bytes=-",
        "bytes=5-2",  # last before first: invalid, ignored
        "bytes=0-1-2",
        "0-5",
    ],
)
def test_anything_but_one_valid_range_means_the_whole_file(header: str | None) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),  # first byte at the end
        ("bytes=10-20", 10),
        ("bytes=99-", 10),
        ("bytes=-0", 10),  # an empty suffix selects nothing
        ("bytes=0-", 0),  # nothing in an empty file can be selected
        ("bytes=-5", 0),
    ],
)
def test_a_range_that_selects_no_byte_is_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.size == size


def test_a_negative_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="size"):
        parse_range("bytes=0-1", -1)


# --- content_disposition ------------------------------------------------------------------


def test_a_plain_name_is_sent_as_is() -> None:
    assert content_disposition("src-1.0.tar.gz") == 'attachment; filename="src-1.0.tar.gz"'


def test_directories_quotes_and_control_characters_never_reach_the_header() -> None:
    value = content_disposition('../../etc/pa"ss\r\nwd')
    assert value.startswith('attachment; filename="pa_sswd"')
    assert not {"\r", "\n"} & set(value)
    assert "/" not in value.split(";")[1]
    assert content_disposition("..") == 'attachment; filename="download"'
    assert content_disposition("dir/") == 'attachment; filename="download"'


def test_a_non_ascii_name_is_kept_exactly_in_filename_star() -> None:
    value = content_disposition("résumé 1.tar")
    assert value == (
        "attachment; filename=\"r_sum__1.tar\"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.tar"
    )


# --- file_response ------------------------------------------------------------------------


@pytest.fixture
def payload() -> bytes:
    # More than two read chunks, so a range crosses chunk boundaries.
    return bytes(range(256)) * ((2 * CHUNK_BYTES) // 256 + 3)


@pytest.fixture
async def client(tmp_path: Path, payload: bytes) -> AsyncIterator[httpx.AsyncClient]:
    path = tmp_path / "blob"
    path.write_bytes(payload)
    app = FastAPI()

    @app.get("/file")
    async def download(request: Request) -> Response:
        return file_response(request, path, filename="blob.bin", etag="v1")

    @app.get("/missing")
    async def missing(request: Request) -> Response:
        try:
            return file_response(request, tmp_path / "nope", filename="x")
        except FileNotFoundError:
            return Response(status_code=404)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_the_whole_file_is_streamed_with_its_length_and_name(
    client: httpx.AsyncClient, payload: bytes
) -> None:
    response = await client.get("/file")
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["content-length"] == str(len(payload))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-disposition"] == 'attachment; filename="blob.bin"'
    assert response.headers["etag"] == '"v1"'
    assert "content-range" not in response.headers


async def test_a_range_is_answered_with_206_and_exactly_those_bytes(
    client: httpx.AsyncClient, payload: bytes
) -> None:
    start, end = CHUNK_BYTES - 10, 2 * CHUNK_BYTES + 10
    response = await client.get("/file", headers={"Range": f"bytes={start}-{end}"})
    assert response.status_code == 206
    assert response.content == payload[start : end + 1]
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(payload)}"

    response = await client.get("/file", headers={"Range": "bytes=-100"})
    assert response.status_code == 206
    assert response.content == payload[-100:]

    response = await client.get("/file", headers={"Range": "bytes=100-"})
    assert response.status_code == 206
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(payload[100:]).digest()


async def test_an_unsatisfiable_range_is_416_with_the_size(
    client: httpx.AsyncClient, payload: bytes
) -> None:
    response = await client.get("/file", headers={"Range": f"bytes={len(payload)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(payload)}"
    assert response.json()["error"]["code"] == "range_not_satisfiable"


async def test_if_range_for_another_version_sends_the_whole_file(
    client: httpx.AsyncClient, payload: bytes
) -> None:
    response = await client.get("/file", headers={"Range": "bytes=0-9", "If-Range": '"v0"'})
    assert response.status_code == 200
    assert response.content == payload
    response = await client.get("/file", headers={"Range": "bytes=0-9", "If-Range": '"v1"'})
    assert response.status_code == 206
    assert response.content == payload[:10]


async def test_a_missing_file_raises_before_any_response_starts(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/missing")).status_code == 404
