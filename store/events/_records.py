"""The on-disk record: one JSON object per line, fields in a fixed order.

    {"id":17,"atMs":1767225600000,"key":"nightly","type":"RunStarted","runId":"r1","data":{...}}

The store writes every line itself, so the head (``id``, ``atMs``, ``key``, ``type``,
``runId``) always comes first in this order and can be read by one regular expression
without decoding the whole object; that keeps opening and indexing a large store cheap.
A line is complete only with its trailing ``\\n``: bytes after the last newline of a file are
a torn write and are never read as a record.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from store.events.errors import InvalidEvent
from store.events.export import audit_csv_tail
from store.events.models import AUDIT_FIELDS, Event, NewEvent, Stream, from_ms

logger = logging.getLogger(__name__)

_HEAD = re.compile(
    rb'\{"id":(\d+),"atMs":(-?\d+),"key":"((?:[^"\\]|\\.)*)","type":"[A-Za-z0-9]*"'
    rb'(?:,"runId":"((?:[^"\\]|\\.)*)")?'
)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _not_serialisable(obj: object) -> Any:
    raise TypeError(f"Object of type {obj.__class__.__name__} is not JSON serializable")


def _make_dumps() -> Callable[[Any], str]:
    """``_ENCODER.encode`` without its per-call setup: the C encoder it builds on every
    call, built once (same output; a circular structure raises RecursionError)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    chunks = make(
        None, _not_serialisable, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )

    def dumps(obj: Any) -> str:
        return "".join(chunks(obj, 0))

    return dumps


_dumps = _make_dumps()
READ_CHUNK = 4 * 1024 * 1024


def encode_tail(event: NewEvent) -> bytes:
    """Everything of the line after ``"atMs":<ms>``, newline included.

    Raises :class:`InvalidEvent` when ``data`` is not JSON-serialisable.
    """
    return encode_event(event)[0]


def encode_event(event: NewEvent) -> tuple[bytes, bytes]:
    """The line tail (see :func:`encode_tail`) and, for audit events, the CSV row tail
    of the sidecar (``export.audit_csv_tail``; ``b""`` for other streams).

    Raises :class:`InvalidEvent` when ``data`` is not JSON-serialisable.
    """
    try:
        key = _STRINGS.get(event.key) or _string(event.key)
        data = event.data
        if event.stream is Stream.AUDIT:
            # The canonical field order lets the CSV export take its fast path.
            data = dict(data)
            data = {name: data.pop(name) for name in AUDIT_FIELDS if name in data} | data
            encoded = _dumps(data)
            csv = audit_csv_tail(json.loads(encoded))
        else:
            encoded = _dumps(data if type(data) is dict else dict(data))
            csv = b""
        if event.run_id is None:
            line = f',"key":{key},"type":"{event.type}","data":{encoded}}}\n'
        else:
            # Not cached: a run id comes back for a handful of events only, and caching it
            # would evict the keys, which come back all the time.
            run = _ENCODER.encode(event.run_id)
            line = f',"key":{key},"type":"{event.type}","runId":{run},"data":{encoded}}}\n'
        return line.encode(), csv
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise InvalidEvent(f"event data is not JSON-serialisable: {exc}") from None


_STRINGS: dict[str, str] = {}


def _string(text: str) -> str:
    """JSON of a key; cached, as the same few keys come back all the time."""
    encoded = _STRINGS.get(text)
    if encoded is None:
        if len(_STRINGS) > 4096:
            _STRINGS.clear()
        encoded = _STRINGS[text] = _ENCODER.encode(text)
    return encoded


def make_line(event_id: int, at_ms: int, tail: bytes) -> bytes:
    return b'{"id":%d,"atMs":%d%s' % (event_id, at_ms, tail)


def decode(line: bytes, stream: Stream) -> Event:
    """The event of one complete line (``ValueError``/``KeyError`` when it is not one)."""
    obj = json.loads(line)
    return event_from_obj(obj, stream)


def event_from_obj(obj: dict[str, Any], stream: Stream) -> Event:
    return Event(
        id=obj["id"],
        stream=stream,
        key=obj["key"],
        type=obj["type"],
        at=from_ms(obj["atMs"]),
        run_id=obj.get("runId"),
        data=obj["data"],
    )


def _text(raw: bytes, cache: dict[bytes, str]) -> str:
    text = cache.get(raw)
    if text is None:
        text = json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()
        cache[raw] = text
    return text


@dataclass(slots=True)
class Scan:
    """The heads of the complete lines of one file region, in file order."""

    ids: list[int] = field(default_factory=list)
    ats: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    runs: list[str | None] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    end: int = 0
    """Offset just after the last complete line (where a torn tail, if any, begins)."""
    size: int = 0
    """Size of the file when it was read."""
    events: list[Event] = field(default_factory=list)
    """Fully decoded events whose id is above the scan's ``decode_after``."""


def scan(fd: int, stream: Stream, start: int = 0, *, decode_after: int | None = None) -> Scan:
    """Read the heads of every complete line of ``fd`` from ``start`` to its end.

    Lines that are not records (never written by this code) are logged and skipped.
    With ``decode_after``, lines with a greater id are also decoded into ``events``.
    """
    size = os.fstat(fd).st_size
    result = Scan(end=start, size=size)
    cache: dict[bytes, str] = {}
    head = _HEAD.match
    pos_in_file = start
    carry = b""
    while pos_in_file < size:
        chunk = os.pread(fd, min(READ_CHUNK, size - pos_in_file), pos_in_file)
        if not chunk:
            break
        buf = carry + chunk if carry else chunk
        base = pos_in_file - len(carry)
        pos_in_file += len(chunk)
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            match = head(buf, pos)
            if match is None:
                logger.warning(
                    "skipped an unreadable event line",
                    extra={"stream": stream.value, "offset": base + pos},
                )
            else:
                event_id = int(match[1])
                result.ids.append(event_id)
                result.ats.append(int(match[2]))
                result.keys.append(_text(match[3], cache))
                run = match[4]
                result.runs.append(None if run is None else _text(run, cache))
                result.offsets.append(base + pos)
                if decode_after is not None and event_id > decode_after:
                    result.events.append(decode(buf[pos : nl + 1], stream))
            pos = nl + 1
        result.end = base + pos
        carry = buf[pos:]
    return result
