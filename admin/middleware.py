"""The outermost layer of every request: request id, body limit, security headers, a
last-resort error envelope, and the request metrics (:mod:`admin.metrics`).

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so that streaming responses (SSE) pass
through untouched. The body is read here, up to the limit, before any route runs: a body
over the limit is refused with 413 as a whole instead of reaching a handler truncated, and
the raw bytes are kept for the audit log's ``payload_hash``.

Requests are counted after the response, by the template of the route that served them
(``scope["route"]``, set by the router), so the label never holds a raw path.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin.errors import envelope
from admin.metrics import metrics_of, route_template

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


def sanitise_request_id(value: str | None) -> str:
    """The client's ``X-Request-Id`` if it is a UUID or ``[A-Za-z0-9._-]{1,64}``, else a
    new UUID (so ids never carry header or log injection)."""
    if value:
        value = value.strip()
        if _REQUEST_ID.fullmatch(value):
            return value
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    return str(uuid.uuid4())


def request_state(scope: Scope) -> MutableMapping[str, Any]:
    """The per-request state dict (``request.state`` in Starlette)."""
    state: MutableMapping[str, Any] = scope.setdefault("state", {})
    return state


class _TooLarge(Exception):
    pass


class AdminMiddleware:
    """Request id, body limit (413), security headers, a 500 envelope for anything a route
    let escape, and request metrics."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        raw_id = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = sanitise_request_id(raw_id)
        state = request_state(scope)
        state["request_id"] = request_id
        metrics = metrics_of(scope)
        status = 500  # unless a response starts

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        began = time.perf_counter()
        try:
            await self._handle(scope, receive, counted, headers, request_id)
        finally:
            if metrics is not None:
                metrics.observe_request(
                    scope.get("method", ""),
                    route_template(scope),
                    status,
                    time.perf_counter() - began,
                )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        request_id: str,
    ) -> None:
        state = request_state(scope)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-request-id", request_id.encode())]
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            body, more = await self._read_body(headers, receive)
        except _TooLarge:
            await self._error(
                send_with_headers,
                request_id,
                413,
                "body_too_large",
                f"request body is larger than {self.max_body_bytes} bytes",
            )
            return
        state["raw_body"] = body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": more}
            return await receive()

        try:
            await self.app(scope, replay, send_with_headers)
        except Exception:
            logger.exception("admin request failed", extra={"request_id": request_id})
            mutation = state.get("mutation")
            if mutation is not None and not mutation.recorded:
                try:
                    await mutation.refused("500 internal_error")
                except Exception:
                    logger.exception("could not audit a failed mutation")
            if not started:
                await self._error(
                    send_with_headers, request_id, 500, "internal_error", "internal error"
                )

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> tuple[bytes, bool]:
        length = headers.get(b"content-length")
        if length is not None:
            try:
                if int(length) > self.max_body_bytes:
                    raise _TooLarge
            except ValueError:
                pass  # h11 refuses a malformed Content-Length before it reaches us
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away; let the app see the disconnect.
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False

    @staticmethod
    async def _error(send: Send, request_id: str, status: int, code: str, message: str) -> None:
        body = json.dumps(envelope(request_id, code, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
