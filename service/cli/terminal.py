"""Text from jobs and sources, made safe to print on a terminal.

Job output, error messages, artifact, job and tag names are written by whoever controls a
source. Printed as they are, a few bytes can move the cursor, rewrite earlier lines, set the
terminal's title or clipboard (escape sequences), or make text read in another order than it
is stored (bidirectional controls, "Trojan Source"). The CLI shows every such character as a
visible escape (``\\x1b``, ``\\u202e``) unless ``--raw`` asks for the exact bytes (to pipe
them to a file or another program).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_SEPARATORS = "\u2028\u2029"
_UNSAFE_INLINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}{_SEPARATORS}]")
_UNSAFE_BLOCK = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}{_SEPARATORS}]")
"""Like :data:`_UNSAFE_INLINE` but keeping newlines and tabs (output is lines of text)."""


def _visible(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inline(text: str) -> str:
    """``text`` for one line of a table or a record: every control, bidi or line-separator
    character (newlines and tabs too) shown as an escape."""
    return _UNSAFE_INLINE.sub(_visible, text)


def block(text: str) -> str:
    """``text`` for printing as lines (job output): like :func:`inline`, but newlines and
    tabs are kept."""
    return _UNSAFE_BLOCK.sub(_visible, text)


def safe_chunks(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode a byte stream (UTF-8, invalid bytes replaced, a character split across two
    chunks kept whole) and make each piece safe with :func:`block`."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield block(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        yield block(tail)
