"""The console: server-rendered pages of the admin listener at ``/`` (the API stays at
``/admin/v1``). See docs/console.md.

:data:`router` holds the pages, the sign-in forms and the assets; :func:`console_error`
renders the error panel (or sends the browser to sign in) for any refused console request.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from admin.auth import config_of
from admin.console import (
    pages,
    pages_notifications,
    pages_ops,
    pages_schedules,
    pages_tasks,
    signin,
)
from admin.console.render import error_page
from admin.middleware import reject_unstorable_text

router = APIRouter(include_in_schema=False, dependencies=[Depends(reject_unstorable_text)])
router.include_router(signin.router)
router.include_router(pages.router)
router.include_router(pages_ops.router)
router.include_router(pages_tasks.router)
router.include_router(pages_schedules.router)
router.include_router(pages_notifications.router)

__all__ = ["console_error", "router"]


def console_error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None
) -> Response:
    """The answer to a refused console request: without credentials, the sign-in page (or
    the Basic challenge); otherwise the error panel."""
    if status == 401:
        mode = config_of(request).console_auth
        if mode == "basic":
            challenge = {"WWW-Authenticate": 'Basic realm="Longshore console", charset="UTF-8"'}
            return error_page(request, status, code, message, challenge)
        if mode in ("bearer", "header") and request.method == "GET":
            target = quote(
                request.url.path + ("?" + request.url.query if request.url.query else "")
            )
            return RedirectResponse(f"/sign-in?next={target}", status_code=303)
    return error_page(request, status, code, message, headers)
