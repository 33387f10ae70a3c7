"""Signing in and out of the console (``bearer`` and ``header`` modes), and the assets.

The sign-in form posts the token (``application/x-www-form-urlencoded``, read by hand: the
API itself never reads forms); a valid token opens a session whose id goes to an
``HttpOnly; SameSite=Strict`` cookie. A wrong one is a 401 (slowed down by the middleware
after repeated failures, like any failed authentication). Both forms must come from the
console's own origin.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from admin.auth import _token_name, config_of
from admin.console.render import ASSET_CACHE, ASSETS, render, set_session_cookie
from admin.errors import NotFound
from admin.mutations import check_same_origin_form
from admin.sessions import COOKIE, cookie_session, sessions_of

router = APIRouter(include_in_schema=False)


def _form(request: Request) -> dict[str, str]:
    raw: bytes = getattr(request.state, "raw_body", b"")
    fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10)
    return {key: values[-1] for key, values in fields.items()}


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return "/"
    return target


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str = "/") -> HTMLResponse:
    config = config_of(request)
    return render(
        request,
        "sign_in.html",
        None,
        title="Sign in",
        next=safe_next(next),
        mode=config.console_auth,
        error="",
    )


@router.post("/sign-in", response_model=None)
async def sign_in(request: Request) -> Response:
    check_same_origin_form(request)
    config = config_of(request)
    form = _form(request)
    target = safe_next(form.get("next"))
    name = _token_name(config, form.get("token", "").strip()) if form.get("token") else None
    if name is None or config.console_auth not in ("bearer", "header"):
        return render(
            request,
            "sign_in.html",
            None,
            status=401,
            title="Sign in",
            next=target,
            mode=config.console_auth,
            error="That token is not valid.",
        )
    session = sessions_of(request.app).create(actor=name, role=config.role_of(name), via="token")
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, session)
    return response


@router.post("/sign-out", response_model=None)
async def sign_out(request: Request) -> Response:
    check_same_origin_form(request)
    session = cookie_session(request)
    form = _form(request)
    if session is not None and session.csrf_matches(form.get("csrf", "")):
        sessions_of(request.app).drop(session.id)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/assets/{name}", response_model=None)
async def asset(name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        raise NotFound(f"no asset {name!r}")
    return Response(found.body, media_type=found.media_type, headers={"cache-control": ASSET_CACHE})
