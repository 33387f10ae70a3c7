"""Typed handlers: registered by decorator, run by the library worker with a validated
payload; bad payloads, permanent failures and retries end where the queue promises."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from pydantic import BaseModel, Field

import longshore
from tests.integration.library_harness import QUICK, TINY_RETRY, eventually, library_url


class SendEmail(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    subject: str
    copies: int = 1


@dataclass
class Resize:
    image: str
    width: int


@pytest.fixture
async def client(backend, queue_location):
    async with longshore.Client(library_url(backend, queue_location)) as opened:
        yield opened


async def test_a_decorated_handler_runs_with_its_typed_payload_and_context(client):
    registry = longshore.Registry()
    seen: list[tuple[object, int, int, str, str | None]] = []

    @registry.handler("send_email")
    async def send_email(payload: SendEmail, ctx: longshore.Context) -> None:
        seen.append((payload, ctx.task_id, ctx.attempt, ctx.queue, ctx.key))

    @registry.handler("resize")
    async def resize(payload: Resize) -> None:
        seen.append((payload, 0, 0, "", None))

    sent = await client.enqueue(
        send_email, SendEmail(to="ann@example.com", subject="Hi"), queue="mail", key="w-1"
    )
    await client.enqueue("resize", Resize(image="a.png", width=64))

    assert await longshore.Worker(client, registry, **QUICK).run_until_idle() == 2

    first = seen[0] if isinstance(seen[0][0], SendEmail) else seen[1]
    assert first == (
        SendEmail(to="ann@example.com", subject="Hi", copies=1),
        sent.task.id,
        1,
        "mail",
        "w-1",
    )
    assert any(entry[0] == Resize(image="a.png", width=64) for entry in seen)


async def test_a_payload_that_does_not_validate_is_dead_lettered_with_the_validation_message(
    client,
):
    registry = longshore.Registry()
    ran: list[SendEmail] = []

    @registry.handler("send_email")
    async def send_email(payload: SendEmail) -> None:
        ran.append(payload)

    task = (
        await client.enqueue("send_email", {"to": "not-an-address", "subject": "Hi"}, retry="fast")
    ).task
    await longshore.Worker(client, registry, **QUICK).run_until_idle()

    assert ran == []
    dead = await client.list_dead()
    assert [entry.id for entry in dead.items] == [task.id]
    error = dead.items[0].last_error or ""
    assert error.startswith(
        "InvalidPayload: payload of 'send_email' does not validate as SendEmail"
    )
    assert "\nto\n" in error
    assert "String should match pattern" in error
    assert dead.items[0].attempts == 1, "an invalid payload is never retried"


async def test_permanent_failure_skips_the_retries_and_other_errors_follow_them(client):
    registry = longshore.Registry()
    calls = {"final": 0, "flaky": 0}

    @registry.handler("final")
    async def final(payload: dict) -> None:
        calls["final"] += 1
        raise longshore.PermanentFailure("card declined")

    @registry.handler("flaky")
    async def flaky(payload: dict) -> None:
        calls["flaky"] += 1
        raise ConnectionError("upstream down")

    await client.enqueue(final, {}, retry=TINY_RETRY)
    await client.enqueue(flaky, {}, retry=TINY_RETRY)
    async with longshore.Worker(client, registry, **QUICK).running():
        await eventually(lambda: _dead_count(client, 2))

    assert calls == {"final": 1, "flaky": 3}
    dead = {entry.handler: entry for entry in (await client.list_dead()).items}
    assert dead["final"].last_error == "PermanentFailure: card declined"
    assert dead["flaky"].last_error == "ConnectionError: upstream down"
    assert dead["flaky"].attempts == 3


async def test_a_sync_handler_runs_in_a_worker_thread(client):
    registry = longshore.Registry()
    threads: list[str] = []

    @registry.handler("blocking")
    def blocking(payload: Resize, ctx: longshore.Context) -> None:
        assert isinstance(payload, Resize)
        assert not ctx.cancelled.is_set()
        threads.append(threading.current_thread().name)

    await client.enqueue(blocking, Resize(image="b.png", width=10))
    await longshore.Worker(client, registry, **QUICK).run_until_idle()

    assert len(threads) == 1
    assert threads[0] != threading.main_thread().name


async def test_registering_a_name_twice_or_a_handler_without_a_payload_is_refused():
    registry = longshore.Registry()

    @registry.handler("once")
    async def once(payload: dict) -> None: ...

    with pytest.raises(longshore.LibraryError, match="already registered"):
        registry.handler("once")(once.function)
    with pytest.raises(longshore.LibraryError, match=r"\(payload\) or \(payload, context\)"):
        registry.handler("nothing")(lambda: None)


async def _dead_count(client: longshore.Client, expected: int) -> bool:
    return (await client.list_dead()).total == expected
