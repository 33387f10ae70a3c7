"""The protocol-v2 ``ls-refs`` request and the parsing of its answer."""

from __future__ import annotations

import pytest

from jobrunner.sources.git.refs import ls_refs_request, parse_ls_refs, pkt_line

A = "a" * 40
B = "b" * 40


def test_pkt_lines_carry_their_own_length() -> None:
    assert pkt_line("command=ls-refs\n") == b"0014command=ls-refs\n"


def test_the_request_asks_for_the_prefixes_peeled() -> None:
    body = ls_refs_request(["refs/tags/v1", "refs/heads/v1"])
    assert body == (
        b"0014command=ls-refs\n"
        b"0014agent=longshore\n"
        b"0001"
        b"0009peel\n"
        b"001cref-prefix refs/tags/v1\n"
        b"001dref-prefix refs/heads/v1\n"
        b"0000"
    )


def test_an_answer_gives_refs_and_peeled_tags() -> None:
    body = pkt_line(f"{A} refs/tags/v1 peeled:{B}\n") + pkt_line(f"{B} refs/heads/v1\n") + b"0000"
    assert parse_ls_refs(body) == {
        "refs/tags/v1": A,
        "refs/tags/v1^{}": B,
        "refs/heads/v1": B,
    }
    assert parse_ls_refs(b"0000") == {}


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no flush packet
        pkt_line(f"{A} refs/tags/v1\n"),  # no flush packet
        b"00zz",  # not a length
        pkt_line(f"{A} refs/tags/v1\n") + b"0000trailing",
        pkt_line("nothex refs/tags/v1\n") + b"0000",
        pkt_line(f"{A} HEAD\n") + b"0000",  # not under refs/
        pkt_line(f"{A} refs/tags/v1 peeled:nothex\n") + b"0000",
        b"0002" + b"0000",  # a length below the header's own
        b"00ff" + b"short",  # longer than the body
        b"<html>moved</html>",
    ],
)
def test_anything_else_is_not_an_answer(body: bytes) -> None:
    assert parse_ls_refs(body) is None
