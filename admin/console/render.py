"""Rendering console pages: the Jinja2 environment, the versioned assets and the page
response (the session cookie and CSRF token, the error panel).

Assets are the files of ``admin/console/assets``, served as ``/assets/<stem>.<sha256[:12]><ext>``
with a year-long immutable cache: a changed file gets a new name. Pages are ``no-store`` (the
security headers of :mod:`admin.middleware`, CSP included, are added to every response).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from admin.auth import Identity, config_of
from admin.config import Role
from admin.sessions import COOKIE, CSRF_HEADER, SESSION_SECONDS, Session, sessions_of

ASSET_CACHE = "public, max-age=31536000, immutable"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

NAV = (
    ("overview", "/", "Overview"),
    ("jobs", "/jobs", "Jobs"),
    ("runs", "/runs", "Runs"),
    ("schedules", "/schedules", "Schedules"),
    ("queues", "/queues", "Queues"),
    ("tasks", "/tasks", "Tasks"),
    ("dead", "/dead-letters", "Dead letters"),
    ("workers", "/workers", "Workers"),
    ("audit", "/audit", "Audit"),
    ("settings", "/settings", "Settings"),
    ("secrets", "/secrets", "Secrets"),
    ("notifications", "/notifications", "Notifications"),
)


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    media_type: str


def _load_assets() -> tuple[dict[str, Asset], dict[str, str]]:
    by_name: dict[str, Asset] = {}
    urls: dict[str, str] = {}
    folder = resources.files("admin.console").joinpath("assets")
    for entry in folder.iterdir():
        stem, dot, ext = entry.name.rpartition(".")
        if not dot or f".{ext}" not in _TYPES:
            continue
        body = entry.read_bytes()
        name = f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}.{ext}"
        by_name[name] = Asset(name=name, body=body, media_type=_TYPES[f".{ext}"])
        urls[entry.name] = f"/assets/{name}"
    return by_name, urls


ASSETS, ASSET_URLS = _load_assets()


def _when(value: Any) -> str:
    """A moment as ``YYYY-MM-DD HH:MM:SS`` UTC ("" for none); accepts datetimes, RFC 3339
    text and epoch milliseconds."""
    if value in (None, "", 0):
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        text: str = value
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


ENV = Environment(
    loader=PackageLoader("admin.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = _when
ENV.filters["duration"] = _duration


def _asset(name: str) -> str:
    return ASSET_URLS[name]


ENV.globals["asset"] = _asset
ENV.globals["nav"] = NAV


def page_session(request: Request, identity: Identity) -> tuple[Session, bool]:
    """The caller's console session (its CSRF token), made now when it has none: returns
    ``(session, created)``."""
    store = sessions_of(request.app)
    session = store.get(request.cookies.get(COOKIE))
    if session is not None and session.actor == identity.actor:
        return session, False
    created = store.create(actor=identity.actor, role=identity.role, via=identity.via)
    return created, True


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(SESSION_SECONDS),
        path="/",
        httponly=True,
        samesite="strict",
        secure=config_of(request).secure_cookies or request.url.scheme == "https",
    )


def render(
    request: Request,
    template: str,
    identity: Identity | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page of ``template`` for ``identity`` (``None``: a page shown before sign-in)."""
    config = config_of(request)
    session: Session | None = None
    created = False
    if identity is not None:
        session, created = page_session(request, identity)
    can_operate = identity is not None and identity.role >= Role.OPERATOR and not config.read_only
    can_admin = identity is not None and identity.role >= Role.ADMIN and not config.read_only
    html = ENV.get_template(template).render(
        identity=identity,
        csrf=session.csrf if session is not None else "",
        csrf_header=CSRF_HEADER,
        read_only=config.read_only,
        can_operate=can_operate,
        can_admin=can_admin,
        signed_in_by_token=identity is not None and identity.via == "session",
        request_id=str(getattr(request.state, "request_id", "")),
        version=config.version,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if created and session is not None:
        set_session_cookie(request, response, session)
    return response


_HINTS = {
    400: "Check the value named in the message and try again.",
    401: "Sign in again: your session may have expired.",
    403: "Your role does not allow this, or the console is read-only.",
    404: "It may have been deleted, or the address is mistyped.",
    409: "It changed meanwhile: reload the page and try again.",
    429: "Too many requests of this kind: wait a little.",
    503: "The store is unavailable: retry in a moment.",
}


def error_page(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The error panel: message, code, request id and a hint (never a blank page)."""
    identity: Identity | None = getattr(request.state, "identity", None)
    response = render(
        request,
        "error.html",
        identity if status != 401 else None,
        status=status,
        title=f"Error {status}",
        status_code=status,
        code=code,
        message=message,
        hint=_HINTS.get(status, "Retry, or report the request id to an administrator."),
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
