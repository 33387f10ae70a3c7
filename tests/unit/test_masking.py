"""Masking of secret values in output: whole values, values cut across chunks at every
position, several values, base64 forms; nothing but the mask is ever held back."""

from __future__ import annotations

import base64

import pytest

from jobrunner.engine import CollectedArtifact
from jobrunner.masking import MASK, OutputMasker, mask_text, masked_artifacts
from store.jobs.models import RunArtifact

SECRET = b"hunter2-correct-horse"


def run(values: list[bytes], chunks: list[bytes]) -> bytes:
    masker = OutputMasker(values)
    return b"".join(masker.feed(chunk) for chunk in chunks) + masker.flush()


def test_a_whole_value_is_masked() -> None:
    assert run([SECRET], [b"pw=" + SECRET + b"\n"]) == b"pw=***\n"


@pytest.mark.parametrize("cut", range(1, len(SECRET)))
def test_a_value_split_across_two_chunks_is_masked_at_every_cut(cut: int) -> None:
    text = b"before " + SECRET + b" after\n"
    where = len(b"before ") + cut
    assert run([SECRET], [text[:where], text[where:]]) == b"before *** after\n"


def test_a_value_fed_byte_by_byte_is_masked() -> None:
    text = b"x" + SECRET + b"y" + SECRET
    assert run([SECRET], [bytes([b]) for b in text]) == b"x***y***"


def test_only_a_possible_start_of_a_value_is_held_back() -> None:
    masker = OutputMasker([SECRET])
    assert masker.feed(b"line one\n") == b"line one\n"
    assert masker.feed(b"tail hunt") == b"tail "
    assert masker.feed(b"ing season\n") == b"hunting season\n"
    assert masker.flush() == b""


def test_a_held_tail_that_was_not_a_value_is_shown_at_the_end() -> None:
    masker = OutputMasker([SECRET])
    assert masker.feed(b"ends with hunter") == b"ends with "
    assert masker.flush() == b"hunter"


def test_several_values_longest_first_and_their_base64_forms() -> None:
    short, long = b"abcdefgh", b"abcdefgh-and-more"
    encoded = base64.b64encode(long)
    out = run([short, long], [b"1 " + long + b" 2 " + short + b" 3 " + encoded + b"\n"])
    assert out == b"1 *** 2 *** 3 ***\n"


def test_nothing_to_mask_passes_chunks_through() -> None:
    masker = OutputMasker([b""])
    assert not masker.active
    assert masker.feed(b"abc") == b"abc"


def test_text_is_masked_too() -> None:
    assert mask_text("error: " + SECRET.decode(), [SECRET]) == "error: " + MASK.decode()


def test_a_large_value_is_masked_in_small_chunks_without_quadratic_work() -> None:
    value = bytes(range(256)) * 256  # 64 KiB, the largest secret
    text = b"start " + value + b" end\n"
    chunks = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    assert run([value], chunks) == b"start *** end\n"


def test_text_quoting_a_value_with_repr_is_masked_in_its_escaped_forms() -> None:
    value = "pa\\ss'wo\"rd\t-" + "x" * 8
    for quoted in (repr(value), repr(f"dir/{value}"), repr(f"a'b\"{value}")):
        error = f"artifacts: skipped an entry with an unsafe name: {quoted}"
        masked = mask_text(error, [value.encode()])
        assert "pa\\" not in masked, masked
        assert "x" * 8 not in masked, masked
        assert "***" in masked


def test_artifact_names_are_masked_and_stay_unique() -> None:
    given = [
        CollectedArtifact(name=f"report-{SECRET.decode()}.txt", size=1, sha256="a" * 64),
        CollectedArtifact(name="report-***.txt", size=2, sha256="b" * 64),
        CollectedArtifact(name="plain.txt", size=3, sha256="c" * 64),
    ]
    kept, problems = masked_artifacts(given, [SECRET])
    assert kept == [
        RunArtifact(name="report-***.txt", size_bytes=1, sha256="a" * 64),
        RunArtifact(name="plain.txt", size_bytes=3, sha256="c" * 64),
    ]
    assert problems == ["skipped 'report-***.txt': a second file of that name once masked"]
    assert masked_artifacts(given[2:], []) == (
        [RunArtifact(name="plain.txt", size_bytes=3, sha256="c" * 64)],
        [],
    )
