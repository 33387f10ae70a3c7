"""A run's retained output keeps the head and the tail, says what it left out, and counts
every byte, whatever the chunking."""

from __future__ import annotations

import random

import pytest

from jobrunner.output import OutputBuffer, omission_marker


def feed(buffer: OutputBuffer, data: bytes, chunk_sizes: list[int]) -> None:
    position = 0
    sizes = iter(chunk_sizes)
    while position < len(data):
        size = next(sizes, 1) or 1
        buffer.append(data[position : position + size])
        position += size


def test_output_within_the_limit_is_kept_whole_without_a_marker() -> None:
    buffer = OutputBuffer(100)
    buffer.append(b"hello ")
    buffer.append(b"world\n")
    assert buffer.render() == b"hello world\n"
    assert buffer.total_bytes == 12
    assert not buffer.truncated


def test_output_exactly_at_the_limit_is_not_truncated() -> None:
    buffer = OutputBuffer(10)
    buffer.append(b"0123456789")
    assert buffer.render() == b"0123456789"
    assert not buffer.truncated


def test_ten_times_the_limit_keeps_head_and_tail_with_the_true_count() -> None:
    data = b"".join(f"line {n:05d}\n".encode() for n in range(1000))  # 11_000 bytes
    buffer = OutputBuffer(1100)
    feed(buffer, data, [7, 300, 1, 4096, 13] * 100)
    rendered = buffer.render()
    assert buffer.truncated
    assert buffer.total_bytes == len(data)
    assert rendered.startswith(data[:550])
    assert rendered.endswith(data[-550:])
    assert omission_marker(len(data) - 1100, len(data)) in rendered
    assert b"[longshore: 9900 bytes omitted of 11000 total]" in rendered
    assert len(rendered) == 1100 + len(omission_marker(9900, 11000))


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 64, 1001])
def test_any_chunking_gives_the_same_head_and_tail(limit: int) -> None:
    rng = random.Random(limit)
    data = rng.randbytes(5000)
    expected_head = data[: limit // 2]
    expected_tail = data[len(data) - (limit - limit // 2) :] if limit else b""
    for _ in range(20):
        buffer = OutputBuffer(limit)
        feed(buffer, data, [rng.choice([1, 2, 5, 100, 999, 3000, 6000]) for _ in range(5000)])
        rendered = buffer.render()
        marker = omission_marker(len(data) - limit, len(data))
        assert rendered == expected_head + marker + expected_tail
        assert buffer.total_bytes == len(data)


def test_one_chunk_larger_than_the_whole_limit() -> None:
    buffer = OutputBuffer(10)
    buffer.append(b"A" * 3 + b"B" * 100 + b"C" * 5)
    assert buffer.render() == b"AAABB" + omission_marker(98, 108) + b"CCCCC"


def test_empty_chunks_change_nothing() -> None:
    buffer = OutputBuffer(4)
    buffer.append(b"")
    buffer.append(b"ab")
    buffer.append(b"")
    assert buffer.render() == b"ab"
    assert buffer.total_bytes == 2


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit_bytes"):
        OutputBuffer(-1)
