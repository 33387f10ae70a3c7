"""Text a job or a source controls is made safe to print on a terminal."""

from __future__ import annotations

import pytest

from service.cli.common import print_record, print_table
from service.cli.terminal import block, inline, safe_chunks


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),
        ("\x1b[2J\x1b[Hclear", "\\x1b[2J\\x1b[Hclear"),
        ("ok\rFAILED", "ok\\x0dFAILED"),
        ("admin\u202e\u2066txt.exe", "admin\\u202e\\u2066txt.exe"),
        ("c1 \x9b31m", "c1 \\x9b31m"),
        ("line\u2028break", "line\\u2028break"),
        ("del\x7f", "del\\x7f"),
        ("plain text, accents é and emoji ✓", "plain text, accents é and emoji ✓"),
    ],
)
def test_controls_and_bidi_are_shown_as_escapes(text: str, shown: str) -> None:
    assert block(text) == shown
    assert inline(text) == shown


def test_output_keeps_its_lines_and_tabs_but_a_table_cell_does_not() -> None:
    assert block("a\tb\nc\n") == "a\tb\nc\n"
    assert inline("a\tb\nstatus: succeeded") == "a\\x09b\\x0astatus: succeeded"


def test_a_stream_split_inside_a_character_or_an_escape_is_still_safe() -> None:
    data = "é\x1b[31m".encode()
    chunks = [data[:1], data[1:3], data[3:]]
    assert "".join(safe_chunks(chunks)) == "é\\x1b[31m"
    assert "".join(safe_chunks([b"bad \xff byte"])) == "bad \ufffd byte"


def test_tables_and_records_escape_what_they_print(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["name", "error"], [["job\x1b[8m", "boom\nstatus: ok"]])
    print_record({"error": "x\u202eY", "name": "n"})
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "boom\\x0astatus: ok" in out
    assert "error: x\\u202eY" in out
