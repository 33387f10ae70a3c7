"""Masking of secret values in a run's output.

Every value a run was given is replaced by ``***`` before its output is retained, sent
live or exported. Output arrives in chunks that may cut a value in two, so
:class:`OutputMasker` holds back, at the end of each chunk, the longest tail that could be
the start of a value (at most ``max(len(value)) - 1`` bytes) until the next chunk or the
end tells. Values are matched as bytes, longest first; the base64 form of each value (as
``base64`` prints it, with or without padding) is masked too. Text about a run
(:func:`mask_text`, e.g. its error, which quotes artifact names with ``repr``) is also masked
in each value's ``repr``-escaped forms, and :func:`mask_names` masks the names of its
artifacts (a job may name a file after a value it was given).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Final

from jobrunner.engine import CollectedArtifact
from store.jobs.models import RunArtifact

MASK: Final = b"***"
MIN_BASE64_SOURCE: Final = 6
"""Values shorter than this are not masked in their base64 form (too short to matter, and
their encodings would mask common text)."""


class OutputMasker:
    """Replaces ``values`` in a stream of chunks (see the module docstring)."""

    def __init__(self, values: Iterable[bytes]) -> None:
        forms: set[bytes] = set()
        for value in values:
            if not value:
                continue
            forms.add(value)
            if len(value) >= MIN_BASE64_SOURCE:
                encoded = base64.b64encode(value)
                forms.update({encoded, encoded.rstrip(b"=")})
        self._forms = sorted(forms, key=len, reverse=True)
        self._held = b""

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return bool(self._forms)

    def feed(self, chunk: bytes) -> bytes:
        """The part of the output so far that can be shown, masked; the rest is held."""
        if not self._forms:
            return chunk
        text = self._mask(self._held + chunk)
        keep = self._partial_tail(text)
        self._held = text[len(text) - keep :] if keep else b""
        return text[: len(text) - keep]

    def flush(self) -> bytes:
        """What is still held, at the end of the output (it is no value: shown as is)."""
        held, self._held = self._held, b""
        return held

    def _mask(self, data: bytes) -> bytes:
        for form in self._forms:
            if form in data:
                data = data.replace(form, MASK)
        return data

    def _partial_tail(self, data: bytes) -> int:
        """The length of the longest tail of ``data`` that starts some value (shorter than
        it). Only positions holding a value's first byte are tried, from the earliest."""
        best = 0
        for form in self._forms:
            first = form[:1]
            position = data.find(first, max(len(data) - len(form) + 1, 0))
            while position != -1 and len(data) - position > best:
                if form.startswith(data[position:]):
                    best = len(data) - position
                    break
                position = data.find(first, position + 1)
        return best


def _escaped_forms(value: bytes) -> set[bytes]:
    """How ``repr`` writes ``value`` inside a quoted string (``\\`` for a backslash,
    ``\\n`` for a newline, ``\\'`` for a quote when the string holds both kinds)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return set()
    plain = "".join(char if char in "'\"" else repr(char)[1:-1] for char in text)
    quoted = plain.replace("'", "\\'")
    return {form.encode("utf-8") for form in (plain, quoted)} - {value}


def mask_text(text: str, values: Iterable[bytes]) -> str:
    """``text`` with every value masked, in its ``repr``-escaped forms too (for a message
    about a run, e.g. its error)."""
    given = [value for value in values if value]
    escaped = [form for value in given for form in _escaped_forms(value)]
    masker = OutputMasker([*given, *escaped])
    if not masker.active:
        return text
    data = masker.feed(text.encode("utf-8", "surrogateescape")) + masker.flush()
    return data.decode("utf-8", "replace")


def masked_artifacts(
    artifacts: Sequence[CollectedArtifact], values: Iterable[bytes]
) -> tuple[list[RunArtifact], list[str]]:
    """The artifacts to record, each name masked, and the problems met: an artifact whose
    masked name an earlier one already has is left out (names stay unique)."""
    forms = list(values)
    kept: list[RunArtifact] = []
    problems: list[str] = []
    taken: set[str] = set()
    for artifact in artifacts:
        name = mask_text(artifact.name, forms)
        if name in taken:
            problems.append(f"skipped {name!r}: a second file of that name once masked")
            continue
        taken.add(name)
        kept.append(RunArtifact(name=name, size_bytes=artifact.size, sha256=artifact.sha256))
    return kept, problems
