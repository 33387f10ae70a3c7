"""Event store value objects, export encoders and retention planning: pure logic, no I/O."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from store.errors import StoreError
from store.events import (
    Event,
    EventFilter,
    EventStoreOptions,
    EventType,
    ExportFormat,
    InvalidEvent,
    NewEvent,
    RetentionPolicy,
    Stream,
    SubscriberDropped,
    payload_hash,
)
from store.events._index import StreamIndex
from store.events._reader import decode_lines
from store.events._records import Scan, decode, encode_tail, make_line
from store.events.export import audit_csv_block, encode, neutralise
from store.events.retention import plan


def test_new_events_are_validated() -> None:
    with pytest.raises(InvalidEvent):
        NewEvent(stream="nope", key="k", type="RunStarted")  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent):
        NewEvent(stream=Stream.RUNS, key="k", type="run.started")
    with pytest.raises(InvalidEvent):
        NewEvent(stream=Stream.RUNS, key="k" * 513, type="RunStarted")
    event = NewEvent.run(EventType.RUN_FAILED, job="build", run_id="r1", exitCode=2)
    assert (event.stream, event.key, event.run_id, event.type) == (
        Stream.RUNS,
        "build",
        "r1",
        "RunFailed",
    )
    assert isinstance(event.type, str)
    assert not isinstance(event.type, EventType)


def test_a_stored_line_decodes_to_the_same_event() -> None:
    new = NewEvent.run("RunOutputEmitted", job='we"ird\\job', run_id="r\n1", line="é ✓ \u2028")
    line = make_line(42, 1_767_225_600_123, encode_tail(new))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    event = decode(line, Stream.RUNS)
    assert event == Event(
        id=42,
        stream=Stream.RUNS,
        key='we"ird\\job',
        type="RunOutputEmitted",
        at=datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC),
        run_id="r\n1",
        data={"line": "é ✓ \u2028"},
    )
    assert event.at_ms == 1_767_225_600_123


def test_payload_hash_is_the_sha256_of_the_raw_body() -> None:
    assert payload_hash(b'{"a":1}') == hashlib.sha256(b'{"a":1}').hexdigest()
    assert payload_hash(b"") == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_risky_csv_cells_get_one_leading_quote(cell: str, safe: str) -> None:
    assert neutralise(cell) == safe


def test_the_audit_csv_encoder_quotes_per_rfc_4180() -> None:
    objs = [
        {
            "id": 1,
            "atMs": 5,
            "key": "t",
            "type": "AuditRecorded",
            "data": {"actor": "a,b", "action": "job.run", "detail": 'say "hi"\r\nbye'},
        }
    ]
    data = b"".join(encode([objs], ExportFormat.CSV, audit=True)).decode()
    assert (
        data.split("\r\n", 1)[0] == "at,actor,request_id,action,target,status,payload_hash,detail"
    )
    assert '"say ""hi""\r\nbye"' in data
    rows = list(csv.reader(io.StringIO(data, newline="")))
    assert rows[1] == ["5", "a,b", "", "job.run", "", "", "", 'say "hi"\r\nbye']
    as_json = json.loads(b"".join(encode([objs, objs], ExportFormat.JSON, audit=True)))
    assert [row["id"] for row in as_json] == [1, 1]


def test_filters_match_on_every_given_field() -> None:
    event = Event(
        id=1,
        stream=Stream.RUNS,
        key="build",
        type="RunStarted",
        at=datetime.now(UTC),
        run_id="r1",
        data={},
    )
    assert EventFilter().matches(event)
    assert EventFilter(streams=frozenset({Stream.RUNS}), key="build", run_id="r1").matches(event)
    assert not EventFilter(streams=frozenset({Stream.AUDIT})).matches(event)
    assert not EventFilter(types=frozenset({"RunFailed"})).matches(event)


def test_options_and_policies_refuse_nonsense() -> None:
    with pytest.raises(InvalidEvent):
        RetentionPolicy(max_per_key=0)
    with pytest.raises(InvalidEvent):
        RetentionPolicy(max_age=timedelta(0))
    with pytest.raises(InvalidEvent):
        EventStoreOptions(directory=Path("x"), segment_bytes=10)
    with pytest.raises(InvalidEvent):
        EventStoreOptions(directory=Path("x"), durability="sometimes")  # type: ignore[arg-type]
    assert not RetentionPolicy().active


def test_errors_belong_to_the_store_tree() -> None:
    assert issubclass(InvalidEvent, StoreError)
    assert issubclass(InvalidEvent, ValueError)
    dropped = SubscriberDropped(17)
    assert dropped.last_id == 17
    assert "after_id=17" in str(dropped)


def _index(rows: list[tuple[int, int, str]], per_segment: int) -> StreamIndex:
    index = StreamIndex(Stream.RUNS, Path("unused"))
    for first in range(0, len(rows), per_segment):
        chunk = rows[first : first + per_segment]
        seg = index.segment(chunk[0][0], Path(f"{first}"), first)
        found = Scan(
            ids=[r[0] for r in chunk],
            ats=[r[1] for r in chunk],
            keys=[r[2] for r in chunk],
            runs=[None] * len(chunk),
            offsets=[i * 10 for i in range(len(chunk))],
            end=len(chunk) * 10,
        )
        index.add(seg, found)
    return index


def test_retention_plans_cut_the_oldest_of_each_key() -> None:
    rows = [(i, 1000 + i, f"k{i % 2}") for i in range(1, 21)]  # ids 1..20, k0 even, k1 odd
    index = _index(rows, per_segment=5)
    by_key = plan(index, RetentionPolicy(max_per_key=3), now_ms=0)
    assert by_key.cuts == {index.key_numbers["k1"]: 15, index.key_numbers["k0"]: 16}
    assert [seg.name for seg in by_key.segments] == [1, 6, 11]
    total = plan(index, RetentionPolicy(max_total=4), now_ms=0)
    assert set(total.cuts.values()) == {17}
    assert [seg.name for seg in total.segments] == [1, 6, 11, 16]
    aged = plan(index, RetentionPolicy(max_age=timedelta(seconds=0.005)), now_ms=1000 + 12 + 5)
    assert set(aged.cuts.values()) == {12}
    assert [seg.name for seg in aged.segments] == [1, 6, 11]
    assert plan(index, RetentionPolicy(max_per_key=100), now_ms=0).segments == []


def _audit_line(event_id: int, data: dict[str, object]) -> bytes:
    new = NewEvent(
        stream=Stream.AUDIT, key=str(data.get("target", "")), type="AuditRecorded", data=data
    )
    return make_line(event_id, 1_767_225_600_000 + event_id, encode_tail(new))


def test_the_fast_audit_csv_path_writes_exactly_what_the_csv_module_would() -> None:
    rng = random.Random(5)
    texts = [
        "plain",
        "",
        "a,b",
        'say "hi"',
        "two\nlines",
        "=SUM(A1)",
        "+1",
        "-1",
        "@x",
        "\ttab",
        "café ✓",
        "}}",
        '":"',
        "x\\y",
        "\u2028",
        "ends with ,",
        " lead space",
    ]
    lines = []
    for event_id in range(1, 400):
        data: dict[str, object] = {
            "detail": rng.choice(texts),
            "actor": rng.choice(texts),
            "requestId": f"r{event_id}",
            "action": rng.choice(["job.run", "=evil"]),
            "target": rng.choice(texts),
            "status": rng.choice(["ok", "error"]),
            "payloadHash": "ab" * 32,
        }
        if event_id % 37 == 0:
            del data["requestId"]  # entries written without a field
        if event_id % 41 == 0:
            data["extra"] = "field"
        if event_id % 3:  # mostly clean rows, in runs
            data = {
                k: ("clean" if isinstance(v, str) and k != "status" else v) for k, v in data.items()
            }
        lines.append(_audit_line(event_id, data))
    block = b"".join(lines)
    expected = b"".join(encode([decode_lines(block)], ExportFormat.CSV, audit=True))
    _header, _, rows = expected.partition(b"\r\n")
    assert audit_csv_block(block) == rows
    assert len(list(csv.reader(io.StringIO(rows.decode(), newline="")))) == 399
