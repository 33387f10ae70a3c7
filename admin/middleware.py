"""The outermost layer of every request: request id, body limit, security headers, a
last-resort error envelope, and the request metrics (:mod:`admin.metrics`).

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so that streaming responses (SSE) pass
through untouched. The body is read here, up to the limit, before any route runs: a body
over the limit is refused with 413 as a whole instead of reaching a handler truncated, and
the raw bytes are kept for the audit log's ``payload_hash``.

Before authentication nothing is read but the headers: a request that announces a body is
authenticated first (401 without reading a byte of it), and the body must then arrive
within :data:`BODY_TIMEOUT_SECONDS` (else 408). A client whose requests failed
authentication :data:`FAILED_AUTH_LIMIT` times within :data:`FAILED_AUTH_WINDOW` seconds
gets each further 401 only after :data:`FAILED_AUTH_DELAY` seconds (a slow-down per client
address, not a lockout: on loopback every client shares one address).

Requests are counted after the response, by the template of the route that served them
(``scope["route"]``, set by the router), so the label never holds a raw path.

:func:`reject_unstorable_text` is a dependency of every route (see ``admin.app``): text no
store can hold (NUL, unpaired surrogates) is refused before it reaches one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin.auth import current_identity
from admin.errors import NotAuthenticated, NotFound, envelope
from admin.metrics import metrics_of, route_template
from admin.mutations import route_mutation
from admin.ratelimit import SlidingWindow

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SIGN_IN_PATHS = frozenset({"/sign-in", "/sign-out"})
"""Console forms posted before (or to end) a session: their small bodies are read first."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
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


BODY_TIMEOUT_SECONDS = 30.0
"""How long an authenticated client may take to send a request body."""
FAILED_AUTH_LIMIT = 10
FAILED_AUTH_WINDOW = 60.0
FAILED_AUTH_DELAY = 1.0
"""See the module docstring: the failed-authentication slow-down."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""Characters no store keeps: NUL (PostgreSQL's ``text`` refuses it) and unpaired UTF-16
surrogates (not encodable as UTF-8)."""
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
"""How either can appear in JSON text (a cheap test before the body is decoded)."""
_UNSTORABLE_MESSAGE = "must not contain NUL characters or unpaired surrogates"


def _unstorable_paths(value: Any, loc: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """Where in a decoded JSON value a string (or an object key) holds such a character."""
    if isinstance(value, str):
        return [loc] if _UNSTORABLE.search(value) else []
    found: list[tuple[str | int, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _UNSTORABLE.search(key):
                found.append((*loc, key))
            found += _unstorable_paths(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _unstorable_paths(item, (*loc, index))
    return found


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route declares (its own and its dependencies')."""
    names = {field.alias for field in dependant.query_params}
    for child in dependant.dependencies:
        names |= _query_names(child)
    return names


async def reject_unstorable_text(request: Request) -> None:
    """A dependency of every route: a NUL character in a query parameter, or a NUL or an
    unpaired surrogate in a JSON string of the body, is a 400 naming the field; in a path
    parameter it is a 404 (nothing is named so). Otherwise it would reach the store and
    fail there with a 500. Refused mutations are audited like any other refusal."""
    for name, value in request.path_params.items():
        if _UNSTORABLE.search(str(value)):
            route_mutation(request)  # registers the audit context (401 without credentials)
            current_identity(request)
            raise NotFound(f"{name}: no resource is named with a NUL character")
    where: list[tuple[str | int, ...]] = []
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is not None:
        declared = _query_names(dependant)
        where += [
            ("query", name)
            for name, value in request.query_params.multi_items()
            if name in declared and _UNSTORABLE.search(value)
        ]
    state = request_state(request.scope)
    raw = state.get("raw_body", b"")
    if "body_object" in state:  # a YAML body, decoded (admin.yaml_body)
        where += _unstorable_paths(state["body_object"], ("body",))
    elif isinstance(raw, bytes) and _UNSTORABLE_ESCAPE.search(raw):
        with contextlib.suppress(ValueError):  # not JSON: the route's validation answers
            where += _unstorable_paths(json.loads(raw), ("body",))
    if where:
        current_identity(request)  # no credentials: 401 first, as for any other request
        raise RequestValidationError(
            [{"type": "string_unstorable", "loc": loc, "msg": _UNSTORABLE_MESSAGE} for loc in where]
        )


class AdminMiddleware:
    """Request id, body limit (413), security headers, a 500 envelope for anything a route
    let escape, and request metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
        failed_auth_delay: float = FAILED_AUTH_DELAY,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.failed_auth_delay = failed_auth_delay
        self._failed_auth = SlidingWindow(FAILED_AUTH_LIMIT, FAILED_AUTH_WINDOW)

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
        client = str((scope.get("client") or ("",))[0])

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    await self._slow_down(client)
                started = True
                extra = [(b"x-request-id", request_id.encode())]
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if _announces_body(headers) and scope.get("path") not in _SIGN_IN_PATHS:
            refusal = _unauthenticated(scope)
            if refusal is not None:
                await self._error(
                    send_with_headers,
                    request_id,
                    401,
                    "unauthenticated",
                    refusal,
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        try:
            async with asyncio.timeout(self.body_timeout):
                body, more = await self._read_body(headers, receive)
        except TimeoutError:
            await self._error(
                send_with_headers,
                request_id,
                408,
                "request_timeout",
                f"the request body did not arrive within {self.body_timeout:g} seconds",
            )
            return
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

    async def _slow_down(self, client: str) -> None:
        """Count a failed authentication of ``client``; past the limit, wait before
        answering it."""
        if self._failed_auth.acquire(client) is not None:
            await asyncio.sleep(self.failed_auth_delay)

    @staticmethod
    async def _error(
        send: Send,
        request_id: str,
        status: int,
        code: str,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps(envelope(request_id, code, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _announces_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length", b"0").strip()
    return b"transfer-encoding" in headers or length not in (b"", b"0")


def _unauthenticated(scope: Scope) -> str | None:
    """Why the request's caller is not authenticated, or ``None`` when it is (the identity
    is cached for the routes)."""
    try:
        current_identity(Request(scope))
    except NotAuthenticated as exc:
        return str(exc)
    return None
