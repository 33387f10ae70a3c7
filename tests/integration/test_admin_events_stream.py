"""``GET /events`` (SSE) behind a real uvicorn server on loopback, over a whole runtime
(SQLite and PostgreSQL): live events with their durable ids, heartbeats and snapshots,
resuming without loss or duplicate (also across a restart of the event store), slow
clients, and ending the streams on shutdown.

httpx's ``ASGITransport`` runs an app to completion before it returns the response, so an
endless stream can only be read from a real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from admin.app import create_app
from admin.config import AdminConfig
from admin.routes.overview import OverviewCache
from admin.seed.items import SeedItems
from admin.services import AdminServices
from admin.streams import end_event_streams, streams_of
from admin.streams.frames import FrameCache
from admin.streams.options import EventsStreamOptions
from admin.streams.reader import BATCH
from admin.streams.snapshots import SNAPSHOTS, Need, SnapshotCache
from service.lifecycle import Runtime, open_runtime
from service.settings import load_settings
from store.events import AuditLog, EventType, NewEvent
from tests.integration.admin_harness import OPERATOR, ROLES, TOKENS, VIEWER

WAIT = 60.0
"""Guard against a hang only (never a performance threshold)."""


@dataclass
class Frame:
    event: str | None
    id: str | None
    data: Any


@dataclass
class Live:
    url: str
    app: Any
    runtime: Runtime
    audit: AuditLog
    services: AdminServices
    client: httpx.AsyncClient

    async def record(self, count: int, *, target: str = "t") -> list[int]:
        """Append ``count`` audit entries (real ones, as a mutation records them)."""
        ids = []
        for n in range(count):
            entry = await self.audit.record(
                actor="alice",
                request_id=f"req-{n}",
                action="queue.update_weight",
                target=target,
                status="ok",
                detail=f"weight={n + 1}",
            )
            ids.append(entry.id)
        return ids


@asynccontextmanager
async def live_admin(
    backend: str, location: Any, data_dir: Path, **options: Any
) -> AsyncIterator[Live]:
    overrides: dict[str, Any] = {"data_dir": data_dir}
    if backend == "postgres":
        overrides["database_url"] = str(location)
    async with open_runtime(load_settings({}, **overrides), role="worker") as runtime:
        audit = AuditLog(runtime.events)
        services = AdminServices(
            queue=runtime.stores.queue,
            audit=audit,
            events=runtime.events,
            jobs=runtime.stores.jobs,
            runs=runtime.stores.runs,
            runner=runtime.job_runner,
            artifacts=runtime.artifacts,
            schedules=runtime.manager,
        )
        app = create_app(services=services, config=AdminConfig(tokens=TOKENS, roles=ROLES))
        timing = {
            "heartbeat_seconds": 0.2,
            "snapshot_debounce_seconds": 0.05,
            "overview_interval_seconds": 0.3,
        }
        app.state.events_stream_options = EventsStreamOptions(**{**timing, **options})
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
        )
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(1000):
                if server.started or task.done():
                    break
                await asyncio.sleep(0.01)
            assert server.started, "uvicorn did not start"
            port = server.servers[0].sockets[0].getsockname()[1]
            url = f"http://127.0.0.1:{port}/admin/v1"
            async with httpx.AsyncClient(base_url=url, timeout=WAIT, trust_env=False) as client:
                yield Live(
                    url=url,
                    app=app,
                    runtime=runtime,
                    audit=audit,
                    services=services,
                    client=client,
                )
        finally:
            end_event_streams(app)
            server.should_exit = True
            await asyncio.wait_for(task, WAIT)


@dataclass
class Reader:
    """Parses an SSE response into frames, in the background."""

    response: httpx.Response
    frames: asyncio.Queue[Frame | None] = field(default_factory=asyncio.Queue)
    retry: int | None = None
    task: asyncio.Task[None] | None = None

    def start(self) -> Reader:
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if "data" in fields or "event" in fields:
                        data = json.loads(fields["data"]) if "data" in fields else None
                        self.frames.put_nowait(Frame(fields.get("event"), fields.get("id"), data))
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "retry":
                    self.retry = int(value)
                elif name == "data" and "data" in fields:
                    fields["data"] += "\n" + value
                else:
                    fields[name] = value
        finally:
            self.frames.put_nowait(None)

    async def next(self, want: Callable[[Frame], bool] = lambda frame: True) -> Frame:
        """The next frame ``want`` accepts (others, such as heartbeats, are skipped)."""
        async with asyncio.timeout(WAIT):
            while True:
                frame = await self.frames.get()
                assert frame is not None, "the stream ended"
                if want(frame):
                    return frame

    async def ids(self, count: int) -> list[int]:
        """The ids of the next ``count`` stored events (snapshots and heartbeats skipped)."""
        return [int(str((await self.next(lambda f: f.id is not None)).id)) for _ in range(count)]

    async def ended(self) -> None:
        async with asyncio.timeout(WAIT):
            while await self.frames.get() is not None:
                pass

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@asynccontextmanager
async def stream(live: Live, path: str = "/events", **headers: str) -> AsyncIterator[Reader]:
    async with live.client.stream("GET", path, headers={**VIEWER, **headers}) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        reader = Reader(response).start()
        try:
            yield reader
        finally:
            await reader.stop()


async def test_a_mutation_arrives_live_as_its_audit_event_with_its_durable_id(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with live_admin(backend, queue_location, tmp_path / "data") as live, stream(live) as sse:
        headers = sse.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["x-accel-buffering"] == "no"
        assert headers["cache-control"] == "no-store"  # it shows data, as pages do
        first = [await sse.next() for _ in range(len(SNAPSHOTS) + 1)]
        assert [frame.event for frame in first] == [*SNAPSHOTS, "heartbeat"]
        assert all(frame.id is None for frame in first)
        assert sse.retry == 3000
        overview, jobs, schedules, audit, heartbeat = (frame.data for frame in first)
        assert {"stats", "coordination", "actions"} <= set(overview)
        assert jobs == {"events": []}
        assert schedules == {"events": []}
        assert audit == {"events": []}
        assert isinstance(heartbeat["ts"], int)

        response = await live.client.post(
            "/queues/x/pause", json={"paused": True}, headers=OPERATOR
        )
        assert response.status_code == 200, response.text
        frame = await sse.next(lambda f: f.event == EventType.AUDIT_RECORDED)
        assert frame.id is not None
        assert int(frame.id) == frame.data["id"]
        assert frame.data["stream"] == "audit"
        assert frame.data["data"]["action"] == "queue.pause"
        assert frame.data["data"]["target"] == "x"
        assert frame.data["data"]["actor"] == "olga"
        assert frame.data["data"]["requestId"] == response.headers["x-request-id"]
        listed = (await live.client.get("/audit", headers=VIEWER)).json()["events"]
        assert listed[0]["id"] == int(frame.id)


async def test_heartbeats_and_changed_snapshots_arrive_without_ids(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with live_admin(backend, queue_location, tmp_path / "data") as live, stream(live) as sse:
        beats = [await sse.next(lambda f: f.event == "heartbeat") for _ in range(3)]
        assert beats[0].data["ts"] <= beats[1].data["ts"] <= beats[2].data["ts"]
        assert (await live.client.post("/pause", headers=OPERATOR)).status_code == 200
        overview = await sse.next(
            lambda f: f.event == "overview" and f.data["coordination"]["paused"]
        )
        assert overview.id is None
        audit = await sse.next(lambda f: f.event == "audit_events" and f.data["events"])
        assert audit.id is None
        assert audit.data["events"][0]["action"] == "dequeue.pause"
        assert audit.data["events"][0]["actor"] == "olga"
        # The dequeue pause was counted in the overview's seed action counters.
        assert overview.data["actions"]["pause"] == 1


async def test_resuming_after_an_id_gets_exactly_the_later_events_in_order(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with live_admin(backend, queue_location, tmp_path / "data") as live:
        ids = await live.record(6)
        stored = [event.id for event in await live.runtime.events.since(ids[2])]
        assert stored[:3] == ids[3:]
        async with stream(live, **{"Last-Event-ID": str(ids[2])}) as sse:
            assert await sse.ids(len(stored)) == stored
            (new,) = await live.record(1)
            assert await sse.ids(1) == [new]
        async with stream(live, f"/events?lastEventId={ids[4]}") as sse:
            later = [event.id for event in await live.runtime.events.since(ids[4])]
            assert await sse.ids(len(later)) == later
            assert later[0] == ids[5]

        for headers, params, name in (
            ({"Last-Event-ID": "abc"}, {}, "Last-Event-ID"),
            ({}, {"lastEventId": "-3"}, "lastEventId"),
        ):
            response = await live.client.get(
                "/events", params=params, headers={**VIEWER, **headers}
            )
            assert response.status_code == 400, response.text
            assert name in response.json()["error"]["message"]
        assert (await live.client.get("/events")).status_code == 401


async def test_resuming_works_across_a_restart_of_the_event_store(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    async with live_admin(backend, queue_location, data_dir) as live:
        ids = await live.record(5)
    async with live_admin(backend, queue_location, data_dir) as live:
        after_restart = [event.id for event in await live.runtime.events.since(ids[1])]
        assert after_restart[:3] == ids[2:]
        async with stream(live, **{"Last-Event-ID": str(ids[1])}) as sse:
            assert await sse.ids(len(after_restart)) == after_restart
            (new,) = await live.record(1)
            assert new > ids[-1]
            assert await sse.ids(1) == [new]


async def test_a_client_too_slow_for_its_buffer_misses_nothing(
    backend: str, queue_location: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        live_admin(backend, queue_location, tmp_path / "data", buffer=4) as live,
        stream(live) as sse,
    ):
        await sse.next(lambda f: f.event == "heartbeat")  # live now
        # One batch of 100 is published at once: far more than the 4-event buffer.
        batch = [
            NewEvent.schedule(EventType.SCHEDULE_FIRED, schedule="burst", n=n) for n in range(100)
        ]
        with caplog.at_level("INFO", logger="admin.routes.events"):
            appended = await live.runtime.events.append_many(batch)
            received = await sse.ids(100)
        assert received == [event.id for event in appended]
        assert any("re-subscribing" in record.getMessage() for record in caplog.records)


async def test_run_output_is_sent_only_for_followed_runs(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with live_admin(backend, queue_location, tmp_path / "data") as live:
        start = live.runtime.events.last_id
        output = EventType.RUN_OUTPUT_EMITTED
        events = await live.runtime.events.append_many(
            [
                NewEvent.run(EventType.RUN_STARTED, job="j", run_id="r1"),
                NewEvent.run(output, job="j", run_id="r1", text="one\n"),
                NewEvent.run(output, job="j", run_id="r2", text="two\n"),
                NewEvent.run(EventType.RUN_SUCCEEDED, job="j", run_id="r1"),
            ]
        )
        ids = [event.id for event in events]
        async with stream(live, f"/events?follow=r1&lastEventId={start}") as sse:
            assert await sse.ids(3) == [ids[0], ids[1], ids[3]]
        async with stream(live, f"/events?lastEventId={start}") as sse:
            assert await sse.ids(2) == [ids[0], ids[3]]


async def test_a_stream_ends_when_its_client_leaves_or_the_streams_are_ended(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with live_admin(backend, queue_location, tmp_path / "data") as live:
        streams = streams_of(live.app)
        async with stream(live) as sse:
            await sse.next(lambda f: f.event == "heartbeat")
            assert streams.open == 1
        for _ in range(int(WAIT / 0.01)):  # the server notices the disconnect
            if streams.open == 0:
                break
            await asyncio.sleep(0.01)
        assert streams.open == 0

        async with stream(live) as sse:
            await sse.next(lambda f: f.event == "heartbeat")
            end_event_streams(live.app)
            await sse.ended()
        assert streams.open == 0

        # A stream opened afterwards sends its snapshots and heartbeat, then ends.
        async with stream(live) as sse:
            first = [await sse.next() for _ in range(len(SNAPSHOTS) + 1)]
            assert [frame.event for frame in first] == [*SNAPSHOTS, "heartbeat"]
            await sse.ended()
        assert streams.open == 0


async def test_a_burst_reaches_every_stream_whole_in_order_with_its_ids(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with (
        live_admin(backend, queue_location, tmp_path / "data") as live,
        stream(live) as one,
        stream(live) as two,
    ):
        for sse in (one, two):
            await sse.next(lambda f: f.event == "heartbeat")  # live now
        # More than one write's worth (BATCH), published at once.
        count = BATCH + 100
        appended = await live.runtime.events.append_many(
            [
                NewEvent.schedule(EventType.SCHEDULE_FIRED, schedule="burst", n=n)
                for n in range(count)
            ]
        )
        expected = [event.id for event in appended]
        received = []
        for sse in (one, two):
            frames = [await sse.next(lambda f: f.id is not None) for _ in range(count)]
            assert [int(str(frame.id)) for frame in frames] == expected
            assert [frame.data["id"] for frame in frames] == expected
            assert [frame.data["data"]["n"] for frame in frames] == list(range(count))
            assert {frame.event for frame in frames} == {EventType.SCHEDULE_FIRED}
            received.append(frames)
        assert received[0] == received[1]
        # Each event was encoded once for both streams.
        frames_cache = streams_of(live.app).frames
        assert all(event_id in frames_cache for event_id in expected)


async def test_frames_are_encoded_once_and_the_cache_is_bounded(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with live_admin(backend, queue_location, tmp_path / "data") as live:
        ids = await live.record(3)
        events = await live.runtime.events.since(ids[0] - 1)
        cache = FrameCache(size=2)
        first = cache.frame(events[0])
        assert cache.frame(events[0]) is first
        text = first.decode()
        assert text.endswith("\n\n")
        fields = dict(line.split(": ", 1) for line in text.strip().split("\n"))
        assert fields["id"] == str(ids[0])
        assert fields["event"] == EventType.AUDIT_RECORDED
        assert json.loads(fields["data"])["id"] == ids[0]
        cache.frame(events[1])
        cache.frame(events[2])
        assert len(cache) == 2
        assert ids[0] not in cache
        assert ids[1] in cache
        assert ids[2] in cache
        assert cache.frame(events[0]) == first  # encoded again, the same bytes


async def test_a_snapshot_is_computed_once_for_every_stream_that_needs_it(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with live_admin(backend, queue_location, tmp_path / "data") as live:
        services = live.services
        cache = SnapshotCache(
            services, live.runtime.events, OverviewCache(services), SeedItems(services)
        )
        (first,) = await live.record(1)
        # Concurrent requests share one computation.
        got = await asyncio.gather(
            *(cache.get("audit_events", Need(first), interval=3600, limit=25) for _ in range(5))
        )
        assert cache.computed == {"audit_events": 1}
        assert all(snapshot is got[0] for snapshot in got)
        snapshot = got[0]
        assert snapshot is not None
        assert snapshot.frame.startswith(b"event: audit_events\ndata: ")
        body = json.loads(snapshot.frame.decode().split("data: ", 1)[1])
        assert [row["id"] for row in body["events"]] == [first]
        # Later requests it satisfies reuse it.
        assert await cache.get("audit_events", Need(first), interval=3600, limit=25) is snapshot

        # A newer one is not computed again within the interval...
        (second,) = await live.record(1)
        newer = Need(second)
        woken = asyncio.Event()
        assert await cache.get("audit_events", newer, interval=3600, limit=25) is None
        assert cache.peek("audit_events", newer, woken.set, interval=3600, limit=25) is None
        assert not cache.running("audit_events")
        assert cache.computed == {"audit_events": 1}
        # ... but once it may start, peek starts it and wakes the caller when it is done.
        assert cache.peek("audit_events", newer, woken.set, interval=0, limit=25) is None
        assert cache.running("audit_events")
        async with asyncio.timeout(WAIT):
            await woken.wait()
        fresh = cache.peek("audit_events", newer, woken.set, interval=0, limit=25)
        assert fresh is not None
        assert fresh.satisfies(newer)
        assert fresh.key != snapshot.key
        assert cache.computed == {"audit_events": 2}


async def test_streams_share_their_snapshots(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    # A long debounce: the first stream's connect-time snapshots serve the others.
    async with (
        live_admin(
            backend, queue_location, tmp_path / "data", snapshot_debounce_seconds=3600
        ) as live,
        stream(live) as one,
        stream(live) as two,
        stream(live) as three,
    ):
        heads = []
        for sse in (one, two, three):
            heads.append([await sse.next() for _ in range(len(SNAPSHOTS))])
        assert heads[0] == heads[1] == heads[2]
        cache = streams_of(live.app).snapshots
        assert cache is not None
        assert cache.computed == dict.fromkeys(SNAPSHOTS, 1)
