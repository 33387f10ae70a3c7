"""A seed 003 admin client, as its UI talks to ``/admin/v1``: over mTLS, a fresh UUID in
``X-Request-Id`` on every call (echoed back, or it fails), action routes posted with no body
and no ``Content-Type``, GETs without the optional parameters it leaves unset; and the
checks of what it reads: every field present, of its type, never null, in its vocabulary."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Mapping
from typing import Any, Final

import httpx

STR, INT, BOOL, OBJ, LIST = str, int, bool, dict, list

RUN_STATUSES: Final = frozenset(
    {"queued", "running", "completed", "failed", "cancelled", "deadline", "invalid", "rate_limited"}
)
"""The job and schedule event statuses a seed client styles (anything else is "unknown")."""
SCHEDULE_STATUSES: Final = frozenset({"healthy", "lagging", "paused"})
AUDIT_STATUSES: Final = frozenset({"ok", "error", "completed", "success", "failed"})


class SeedClient:
    """Sends what seed 003's admin UI sends (see the module docstring)."""

    def __init__(self, base_url: str, context: ssl.SSLContext) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url, verify=context, trust_env=False, timeout=30
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, **params: Any) -> httpx.Response:
        """A GET with only the parameters the client set (``None`` ones left out)."""
        sent = {name: value for name, value in params.items() if value is not None}
        # An empty ``params`` would drop a query written into ``path``.
        return await self._send("GET", path, **({"params": sent} if sent else {}))

    async def action(self, path: str) -> httpx.Response:
        """``POST /pause``, ``/resume``, ``/jobs/{n}/run``, ``/schedules/{n}/run``: no body,
        no ``Content-Type``."""
        response = await self._send("POST", path)
        assert "content-type" not in response.request.headers
        assert response.request.content == b""
        return response

    async def post(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        return await self._send("POST", path, json=dict(body))

    async def delete(self, path: str) -> httpx.Response:
        return await self._send("DELETE", path)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request_id = str(uuid.uuid4())
        response = await self.http.request(
            method, path, headers={"X-Request-Id": request_id}, **kwargs
        )
        assert response.headers.get("x-request-id") == request_id, "the request id is echoed"
        return response

    async def ok(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """The JSON answer of a call that must succeed (2xx)."""
        if method == "GET":
            response = await self.get(path)
        elif method == "ACTION":
            response = await self.action(path)
        elif method == "DELETE":
            response = await self.delete(path)
        else:
            response = await self.post(path, body or {})
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()


def check_fields(obj: Any, fields: Mapping[str, type], where: str) -> None:
    """Every field present, never null, of its type (numbers are ints, never bools)."""
    assert isinstance(obj, dict), f"{where}: not an object: {obj!r}"
    for name, kind in fields.items():
        assert name in obj, f"{where}: {name} is missing"
        value = obj[name]
        assert value is not None, f"{where}: {name} is null"
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        assert ok, f"{where}: {name} is {value!r}, not a {kind.__name__}"


def check_metadata(obj: dict[str, Any], where: str) -> None:
    metadata = obj["metadata"]
    assert isinstance(metadata, dict), where
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()), (
        f"{where}: metadata must map strings to strings: {metadata!r}"
    )


def check_error_envelope(response: httpx.Response, status: int, code: str) -> str:
    """A seed client reads ``{"error": {"code", "message"}}``; the message it shows."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    assert message
    return message
