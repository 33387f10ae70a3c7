"""Export encoders: JSONL, JSON and CSV, produced chunk by chunk (constant memory).

Audit rows (SPEC §6):

- JSONL / JSON objects: ``{"id", "atMs", "actor", "requestId", "action", "target",
  "status", "payloadHash", "detail"}``. JSON is one array, streamed (``[`` first, ``]`` last).
- CSV: header ``at,actor,request_id,action,target,status,payload_hash,detail``; ``at`` in
  epoch milliseconds; RFC 4180 (comma, ``"``-quoting when needed with ``""`` escapes, CRLF
  line ends, line breaks kept inside quoted cells). Text cells that begin with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return get a leading ``'`` so spreadsheets show them as
  text instead of evaluating a formula (OWASP "CSV injection"); the one character is the
  only change, so a reader strips it to get the original back.

Event rows: JSONL / JSON objects ``{"id", "stream", "key", "type", "atMs", "runId"?,
"data"}``; CSV header ``id,at,stream,key,run_id,type,data`` (``data`` as compact JSON),
neutralised the same way.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Generator, Iterable
from typing import Any

from store.events.models import AUDIT_FIELDS, ExportFormat

AUDIT_CSV_HEADER = (
    "at",
    "actor",
    "request_id",
    "action",
    "target",
    "status",
    "payload_hash",
    "detail",
)
EVENT_CSV_HEADER = ("id", "at", "stream", "key", "run_id", "type", "data")
CHUNK_BYTES = 256 * 1024
_RISKY = frozenset("=+-@\t\r")
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# Fast path of the audit CSV. A stored audit line holds a backslash only when a value has
# an escaped character, and '":"' followed by = + - @ only when a value needs neutralising.
# Every other line has the store's canonical layout (see ``AUDIT_FIELDS``), and its string
# values hold no '"', so they can be copied into quoted CSV cells unchanged: a run of such
# lines becomes CSV by a few C-level substitutions over the whole run (cut the head up to
# the actor, cut each field name, turn the closing braces into CRLF). A check afterwards
# (14 quotes per row, no field name left) sends a run that does not fit, e.g. an entry with
# extra or missing fields, down the slow path instead: json and the csv module, line by
# line. Both paths produce the same bytes.
_HEAD = re.compile(rb'\{"id":\d+,"atMs":')
_TO_ACTOR = re.compile(rb',"key":"[^"\n]*","type":"[^"\n]*","data":\{"actor":')
_LATER_NAMES = tuple(b',"%s":' % name.encode() for name in AUDIT_FIELDS[1:])
_SLOW_MARKS = (b"\\", b'":"=', b'":"+', b'":"-', b'":"@')


def audit_csv_block(block: bytes) -> bytes:
    """CSV rows (no header) of a block of complete stored audit lines."""
    slow: set[int] = set()
    for mark in _SLOW_MARKS:
        pos = block.find(mark)
        while pos >= 0:
            slow.add(block.rfind(b"\n", 0, pos) + 1)
            pos = block.find(mark, block.find(b"\n", pos) + 1)
    if not slow:
        return _clean_run(block)
    out = []
    cursor = 0
    for start in sorted(slow):
        end = block.find(b"\n", start) + 1
        if cursor < start:
            out.append(_clean_run(block[cursor:start]))
        out.append(_slow_lines(block[start:end]))
        cursor = end
    if cursor < len(block):
        out.append(_clean_run(block[cursor:]))
    return b"".join(out)


def _clean_run(run: bytes) -> bytes:
    out = _TO_ACTOR.sub(b",", _HEAD.sub(b"", run))
    for name in _LATER_NAMES:
        out = out.replace(name, b",")
    out = out.replace(b"}}\n", b"\r\n")
    rows = run.count(b"\n")
    if out.count(b'"') != 14 * rows or out.count(b"\r\n") != rows or b'":' in out:
        return _slow_lines(run)
    return out


def _slow_lines(lines: bytes) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    for line in lines.splitlines():
        try:
            rows = _audit_rows([json.loads(line)])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # not a record (never written by the store): skipped, as on read
        writer.writerows(rows)
    return buffer.getvalue().encode()


def audit_csv_tail(data: Any) -> bytes:
    """The CSV row of an audit record with stored (decoded) ``data``, without its ``at``
    cell: what follows the epoch milliseconds, CRLF included (``b""`` when the slow path
    would skip the record)."""
    try:
        row = _audit_rows([{"atMs": 0, "data": data}])[0][1:]
    except (KeyError, TypeError, AttributeError):
        return b""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC).writerow(row)
    return b"," + buffer.getvalue().encode()


def csv_header(audit: bool) -> bytes:
    return (",".join(AUDIT_CSV_HEADER if audit else EVENT_CSV_HEADER) + "\r\n").encode()


def neutralise(cell: str) -> str:
    """``cell`` made safe for spreadsheets (see the module docstring)."""
    return "'" + cell if cell[:1] in _RISKY else cell


def audit_object(obj: dict[str, Any]) -> dict[str, Any]:
    """The camelCase export object of one stored audit record."""
    data = obj["data"]
    return {
        "id": obj["id"],
        "atMs": obj["atMs"],
        "actor": data.get("actor", ""),
        "requestId": data.get("requestId", ""),
        "action": data.get("action", ""),
        "target": data.get("target", ""),
        "status": data.get("status", ""),
        "payloadHash": data.get("payloadHash", ""),
        "detail": data.get("detail", ""),
    }


def event_object(obj: dict[str, Any], stream: str) -> dict[str, Any]:
    """The camelCase export object of one stored event record."""
    out = {"id": obj["id"], "stream": stream, "key": obj["key"], "type": obj["type"]}
    out["atMs"] = obj["atMs"]
    if obj.get("runId") is not None:
        out["runId"] = obj["runId"]
    out["data"] = obj["data"]
    return out


def _audit_rows(objs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    n = neutralise
    rows = []
    for obj in objs:
        d = obj["data"]
        rows.append(
            (
                obj["atMs"],
                n(d.get("actor", "")),
                n(d.get("requestId", "")),
                n(d.get("action", "")),
                n(d.get("target", "")),
                d.get("status", ""),
                d.get("payloadHash", ""),
                n(d.get("detail", "")),
            )
        )
    return rows


def _event_rows(stream: str) -> Callable[[list[dict[str, Any]]], list[tuple[Any, ...]]]:
    def rows(objs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        n = neutralise
        return [
            (
                obj["id"],
                obj["atMs"],
                stream,
                n(obj["key"]),
                n(obj.get("runId") or ""),
                obj["type"],
                n(_DUMPS(obj["data"])),
            )
            for obj in objs
        ]

    return rows


def encode(
    batches: Iterable[list[dict[str, Any]]],
    fmt: ExportFormat,
    *,
    audit: bool,
    stream: str = "audit",
) -> Generator[bytes]:
    """Chunks (about ``CHUNK_BYTES`` each) of the export of ``batches`` of stored records."""
    if fmt is ExportFormat.CSV:
        yield from _csv(
            batches,
            AUDIT_CSV_HEADER if audit else EVENT_CSV_HEADER,
            _audit_rows if audit else _event_rows(stream),
        )
        return
    convert: Callable[[dict[str, Any]], dict[str, Any]] = (
        audit_object if audit else (lambda obj: event_object(obj, stream))
    )
    if fmt is ExportFormat.JSONL:
        for batch in batches:
            yield ("\n".join(_DUMPS(convert(obj)) for obj in batch) + "\n").encode()
        return
    first = True
    yield b"["
    for batch in batches:
        text = ",\n".join(_DUMPS(convert(obj)) for obj in batch)
        yield (text if first else ",\n" + text).encode()
        first = False
    yield b"]\n"


def _csv(
    batches: Iterable[list[dict[str, Any]]],
    header: tuple[str, ...],
    to_rows: Callable[[list[dict[str, Any]]], list[tuple[Any, ...]]],
) -> Generator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    buffer.write(",".join(header) + "\r\n")
    for batch in batches:
        writer.writerows(to_rows(batch))
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
