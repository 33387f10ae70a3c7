"""Exports of the audit log and of job events parse back with csv and json, neutralise
spreadsheet formulas, honour every filter and limit, and stream in bounded chunks."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from store.events import (
    AuditLog,
    AuditQuery,
    EventQuery,
    EventStoreOptions,
    EventType,
    ExportFormat,
    FileEventStore,
    NewEvent,
    Stream,
    payload_hash,
)

NASTY = '=HYPERLINK("http://x"), "quoted", comma,\nsecond line\r\nthird'
HEADER = ["at", "actor", "request_id", "action", "target", "status", "payload_hash", "detail"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileEventStore]:
    opened = await FileEventStore.open(
        EventStoreOptions(directory=tmp_path / "events", export_limit_max=500, segment_bytes=8192)
    )
    yield opened
    await opened.close()


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def fill(log: AuditLog) -> None:
    for i in range(40):
        await log.record(
            actor="CN=alice" if i % 2 else "token:ci",
            request_id=f"req-{i}",
            action="job.run" if i % 4 else "schedule.pause",
            target=f"job-{i % 5}",
            status="ok" if i % 3 else "error",
            body=f'{{"n":{i}}}'.encode(),
            detail=NASTY if i == 7 else f"detail {i}",
        )


async def test_csv_export_matches_the_spec_and_round_trips_a_nasty_detail(
    store: FileEventStore,
) -> None:
    log = AuditLog(store)
    await fill(log)
    data = await collect(log.export(AuditQuery(), ExportFormat.CSV))
    assert data.startswith(b"at,actor,request_id,action,target,status,payload_hash,detail\r\n")
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows[0] == HEADER
    assert len(rows) == 41
    nasty = rows[8]
    assert nasty[7] == "'" + NASTY  # neutralised with one leading quote, otherwise intact
    assert nasty[7][1:] == NASTY
    assert nasty[2] == "req-7"
    assert nasty[1] == "CN=alice"
    assert nasty[6] == payload_hash(b'{"n":7}')
    entries = list(reversed(await log.recent(AuditQuery(limit=100))))
    assert [int(row[0]) for row in rows[1:]] == [int(e.at.timestamp() * 1000) for e in entries]
    assert {row[5] for row in rows[1:]} == {"ok", "error"}


@pytest.mark.parametrize("leading", ["=", "+", "-", "@", "\t", "\r"])
async def test_every_formula_prefix_is_neutralised_in_every_text_cell(
    store: FileEventStore, leading: str
) -> None:
    log = AuditLog(store)
    await log.record(
        actor=f"{leading}actor",
        request_id=f"{leading}rid",
        action="job.run",
        target=f"{leading}target",
        status="error",
        detail=f"{leading}cmd|' /C calc'!A0",
    )
    data = await collect(log.export(AuditQuery(), ExportFormat.CSV))
    row = list(csv.reader(io.StringIO(data.decode(), newline="")))[1]
    for cell in (row[1], row[2], row[4], row[7]):
        assert cell.startswith("'" + leading)


async def test_json_and_jsonl_exports_parse_back_with_camel_case_keys(
    store: FileEventStore,
) -> None:
    log = AuditLog(store)
    await fill(log)
    as_json = json.loads(await collect(log.export(AuditQuery(), ExportFormat.JSON)))
    lines = (await collect(log.export(AuditQuery(), ExportFormat.JSONL))).decode().splitlines()
    as_jsonl = [json.loads(line) for line in lines]
    assert as_json == as_jsonl
    assert len(as_json) == 40
    first = as_json[7]
    assert set(first) == {
        "id",
        "atMs",
        "actor",
        "requestId",
        "action",
        "target",
        "status",
        "payloadHash",
        "detail",
    }
    assert first["detail"] == NASTY  # JSON needs no neutralising
    assert first["requestId"] == "req-7"
    assert [row["id"] for row in as_json] == sorted(row["id"] for row in as_json)
    empty = await collect(log.export(AuditQuery(action="nope"), ExportFormat.JSON))
    assert json.loads(empty) == []


async def test_filters_and_limits_hold(store: FileEventStore) -> None:
    log = AuditLog(store)
    await fill(log)

    async def rows(query: AuditQuery) -> list[dict[str, object]]:
        data = await collect(log.export(query, ExportFormat.JSONL))
        return [json.loads(line) for line in data.decode().splitlines()]

    assert {r["action"] for r in await rows(AuditQuery(action="schedule.pause"))} == {
        "schedule.pause"
    }
    assert len(await rows(AuditQuery(action="schedule.pause"))) == 10
    assert [r["requestId"] for r in await rows(AuditQuery(target="job-3"))] == [
        f"req-{i}" for i in range(3, 40, 5)
    ]
    by_actor = await rows(AuditQuery(actor="token:ci", action="job.run"))
    assert [r["requestId"] for r in by_actor] == [
        f"req-{i}" for i in range(40) if i % 2 == 0 and i % 4
    ]
    assert [r["requestId"] for r in await rows(AuditQuery(limit=3))] == ["req-0", "req-1", "req-2"]
    assert len(await rows(AuditQuery(target="job-1", limit=2))) == 2

    # ``newest``: the last ``limit`` matches (what recent_audit lists), still oldest first.
    async def newest(query: AuditQuery, fmt: ExportFormat = ExportFormat.JSONL) -> list[str]:
        data = (await collect(log.export(query, fmt, newest=True))).decode()
        if fmt is ExportFormat.CSV:
            return [row[2] for row in csv.reader(io.StringIO(data, newline=""))][1:]
        return [json.loads(line)["requestId"] for line in data.splitlines()]

    for fmt in (ExportFormat.JSONL, ExportFormat.CSV):
        assert await newest(AuditQuery(limit=3), fmt) == ["req-37", "req-38", "req-39"]
    listed = await log.recent(AuditQuery(target="job-1", limit=2))
    assert await newest(AuditQuery(target="job-1", limit=2)) == [
        e.request_id for e in reversed(listed)
    ]
    assert await newest(AuditQuery(action="schedule.pause", limit=1000)) == [
        r["requestId"] for r in await rows(AuditQuery(action="schedule.pause"))
    ]

    everything = await rows(AuditQuery())
    middle = everything[10]["atMs"]
    assert isinstance(middle, int)
    since = await rows(AuditQuery(since=_from_ms(middle)))
    until = await rows(AuditQuery(until=_from_ms(middle)))
    assert all(r["atMs"] >= middle for r in since)  # type: ignore[operator]
    assert all(r["atMs"] < middle for r in until)  # type: ignore[operator]
    assert len(since) + len(until) == 40
    later = await rows(AuditQuery(since=_from_ms(middle + 3_600_000)))
    assert later == []


async def test_the_export_limit_is_capped(store: FileEventStore) -> None:
    await store.append_many(
        [
            NewEvent(
                stream=Stream.AUDIT,
                key="t",
                type=EventType.AUDIT_RECORDED,
                data={"actor": "a", "action": "job.run", "target": "t", "status": "ok"},
            )
            for _ in range(700)
        ]
    )
    data = await collect(store.export_audit(AuditQuery(limit=10_000), ExportFormat.CSV))
    assert len(list(csv.reader(io.StringIO(data.decode(), newline="")))) == 501


async def test_a_large_export_streams_in_bounded_chunks(tmp_path: Path) -> None:
    store = await FileEventStore.open(EventStoreOptions(directory=tmp_path / "big"))
    try:
        for first in range(0, 30_000, 5_000):
            await store.append_many(
                [
                    NewEvent(
                        stream=Stream.AUDIT,
                        key=f"job-{i % 10}",
                        type=EventType.AUDIT_RECORDED,
                        data={"actor": "a", "action": "job.run", "detail": "x" * 50},
                    )
                    for i in range(first, first + 5_000)
                ]
            )
        sizes = [len(chunk) async for chunk in store.export_audit(AuditQuery(), ExportFormat.CSV)]
        assert sum(sizes) > 2_000_000
        assert len(sizes) > 3
        assert max(sizes) < 2 * 1024 * 1024
    finally:
        await store.close()


async def test_job_events_export_in_every_format(store: FileEventStore) -> None:
    for i in range(6):
        await store.append(
            NewEvent.run(
                EventType.RUN_OUTPUT_EMITTED,
                job="build" if i % 2 else "other",
                run_id=f"r{i // 4}",
                line=f'=line {i}, "q"',
            )
        )
    query = EventQuery(stream=Stream.RUNS, key="build")
    lines = (await collect(store.export_events(query, ExportFormat.JSONL))).decode().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["data"]["line"] for o in objs] == [f'=line {i}, "q"' for i in (1, 3, 5)]
    assert set(objs[0]) == {"id", "stream", "key", "type", "atMs", "runId", "data"}
    assert json.loads(await collect(store.export_events(query, ExportFormat.JSON))) == objs
    rows = list(
        csv.reader(
            io.StringIO((await collect(store.export_events(query, "csv"))).decode(), newline="")
        )
    )
    assert rows[0] == ["id", "at", "stream", "key", "run_id", "type", "data"]
    assert [json.loads(row[6])["line"] for row in rows[1:]] == [o["data"]["line"] for o in objs]
    by_run = EventQuery(stream=Stream.RUNS, run_id="r1", limit=1)
    one = (await collect(store.export_events(by_run, ExportFormat.JSONL))).decode().splitlines()
    assert [json.loads(line)["runId"] for line in one] == ["r1"]


async def test_an_export_does_not_include_events_appended_after_it_started(
    store: FileEventStore,
) -> None:
    log = AuditLog(store)
    await fill(log)
    chunks = log.export(AuditQuery(), ExportFormat.JSONL)
    first = await anext(chunks)
    await asyncio.gather(
        *(
            log.record(actor="late", request_id="x", action="job.run", target="t", status="ok")
            for _ in range(5)
        )
    )
    rest = first + b"".join([c async for c in chunks])
    assert b'"actor":"late"' not in rest
    assert len(rest.decode().splitlines()) == 40


def _from_ms(ms: int) -> object:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC) + timedelta(0)


async def test_csv_from_audit_sidecars_equals_csv_from_the_lines(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    texts = ["plain", "", "a,b", 'say "hi"', "two\nlines", "=SUM(A1)", "+1", "-1", "@x"]
    texts += ["\ttab", "café ✓", "}}", '":"', "x\\y", "\u2028", " lead", "\r\n"]
    options = EventStoreOptions(directory=tmp_path / "ev", segment_bytes=16_384)
    store = await FileEventStore.open(options)
    try:
        n = 0
        for size in [1, 7, 1, 40, 3, 120, 1, 1, 60]:
            batch = []
            for _ in range(size):
                n += 1
                data: dict[str, object] = {
                    "actor": rng.choice(texts),
                    "requestId": f"r{n}",
                    "action": rng.choice(["job.run", "=evil"]),
                    "target": rng.choice(texts),
                    "status": rng.choice(["ok", "error"]),
                    "payloadHash": "ab" * 32,
                    "detail": rng.choice(texts),
                }
                if n % 11 == 0:
                    del data["requestId"]
                if n % 13 == 0:
                    data["extra"] = 5
                batch.append(
                    NewEvent(stream=Stream.AUDIT, key=f"k{n % 4}", type="AuditRecorded", data=data)
                )
            await store.append_many(batch)
            await store.append(NewEvent.run(EventType.RUN_STARTED, job="j", run_id="r"))

        async def exports() -> list[bytes]:
            queries = [AuditQuery(), AuditQuery(limit=77), AuditQuery(limit=1)]
            return [await collect(store.export_audit(q, ExportFormat.CSV)) for q in queries]

        with_sidecars = await exports()
        sidecars = sorted((tmp_path / "ev" / "audit").glob("*.csvx"))
        assert sidecars
        rows = list(csv.reader(io.StringIO(with_sidecars[0].decode(), newline="")))
        assert len(rows) == n + 1
        assert len(with_sidecars[1].split(b"\r\n")) > 77  # detail line breaks inside cells
        for number, path in enumerate(sidecars):  # damage them in every way
            raw = path.read_bytes()
            if number % 3 == 0:
                path.write_bytes(raw[: len(raw) // 2])
            elif number % 3 == 1:
                path.write_bytes(raw.replace(b"ab", b"AB", 1))
            else:
                path.unlink()
        assert await exports() == with_sidecars
        # The writer cuts a damaged tail before adding frames; the result still matches.
        await store.append_many(
            [
                NewEvent(stream=Stream.AUDIT, key="k", type="AuditRecorded", data={"detail": t})
                for t in texts
            ]
        )
        with_sidecars = await exports()
        for path in (tmp_path / "ev" / "audit").glob("*.csvx"):
            path.unlink()
        assert await exports() == with_sidecars
    finally:
        await store.close()
