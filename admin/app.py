"""The admin API app factory (DESIGN §2): ``create_app(services=..., config=...)``.

The app owns no resources: ``service/`` opens the collaborators of
:class:`~admin.services.AdminServices`, passes them in and closes them after the server
stops. Every response carries ``X-Request-Id`` and the
security headers; every error the envelope of :func:`admin.errors.envelope`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from admin import console
from admin.auth import RequireViewer, config_of
from admin.config import AdminConfig
from admin.errors import NotAuthenticated, envelope, status_of
from admin.middleware import AdminMiddleware, reject_unstorable_text
from admin.mutations import pending_mutation, route_mutation
from admin.routes import (
    audit,
    dequeue,
    dlq,
    events,
    health,
    jobs,
    maintenance,
    metrics,
    notification_tests,
    notifications,
    overview,
    queues,
    runs,
    schedule_preview,
    schedules,
    secrets,
    task_actions,
    tasks,
    workers,
)
from admin.schemas import ErrorBody
from admin.services import AdminServices
from admin.streams import close_streams
from store.errors import LongshoreError

logger = logging.getLogger(__name__)

BASE_PATH = "/admin/v1"
OPENAPI_PATH = f"{BASE_PATH}/openapi.json"

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Invalid request (the message names the field)"),
        (401, "No or invalid credentials"),
        (403, "The role does not allow this, approval is missing, or a cross-site request"),
        (404, "Not found"),
        (413, "Request body larger than 1 MiB"),
        (415, "A form body (the API reads JSON only)"),
        (503, "The store is unavailable; retry later"),
    )
}


_OPTIONAL_ROUTERS: tuple[tuple[APIRouter, tuple[str, ...]], ...] = (
    (jobs.router, ("jobs", "runs", "runner", "events", "artifacts")),
    (schedules.router, ("schedules", "events")),
    (runs.router, ("runs", "events", "artifacts")),
    (audit.router, ("events",)),
    (notifications.router, ("notifications",)),
    (notification_tests.router, ("notifications", "notification_tests")),
    (overview.router, ()),
    (events.router, ("events",)),
    (secrets.router, ("secrets", "jobs")),
)
"""Routers mounted only when the :class:`AdminServices` fields they name are given."""


def create_app(*, services: AdminServices, config: AdminConfig) -> FastAPI:
    """Build the admin API over ``services`` (any store backend), recording mutations in
    ``services.audit``."""

    @asynccontextmanager
    async def lifespan(served: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "admin api started",
            extra={"bearer_tokens": len(config.tokens), "approval": config.require_approval},
        )
        yield
        await close_streams(served)  # the snapshot computations still running
        logger.info("admin api stopped")

    app = FastAPI(
        title="Longshore admin API",
        version=config.version,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.admin_services = services
    app.state.admin_config = config

    api = APIRouter(
        prefix=BASE_PATH,
        responses=_ERROR_RESPONSES,
        dependencies=[Depends(reject_unstorable_text)],
    )
    for module in (
        health,
        queues,
        dequeue,
        dlq,
        tasks,
        task_actions,
        workers,
        maintenance,
        metrics,
        schedule_preview,
    ):
        api.include_router(module.router)
    for router, needs in _OPTIONAL_ROUTERS:
        if all(getattr(services, name) is not None for name in needs):
            api.include_router(router)

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request, _: RequireViewer) -> dict[str, Any]:
        # Mounted under a prefix in another app, the paths are relative to that prefix.
        prefix = request.scope.get("root_path", "").rstrip("/")
        document = _openapi(app)
        return {**document, "servers": [{"url": prefix}]} if prefix else document

    app.include_router(api)
    if config.console:
        app.include_router(console.router)
    app.add_exception_handler(LongshoreError, _longshore_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(AdminMiddleware, max_body_bytes=config.max_body_bytes)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, minus the 422 responses this API never sends (validation errors
    are 400 with the error envelope)."""
    if app.openapi_schema is None:
        schema = app.openapi()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def _app_path(request: Request) -> str:
    """The request's path inside this app (without the prefix it is mounted under)."""
    path = request.url.path
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return path[len(root) :] if root and path.startswith(root + "/") else path


def is_console_path(path: str) -> bool:
    """Whether ``path`` is the console's (everything but the API)."""
    return path != BASE_PATH and not path.startswith(BASE_PATH + "/")


async def _respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error response, after auditing the refused mutation this request was, if any
    (a refusal the audit log cannot record is logged; the caller still gets its answer)."""
    mutation = pending_mutation(request)
    if mutation is not None:
        try:
            await mutation.refused(f"{status} {code}: {message}")
        except LongshoreError:
            logger.exception("could not audit a refused mutation")
    if config_of(request).console and is_console_path(_app_path(request)):
        return console.console_error(request, status, code, message, dict(headers or {}))
    return JSONResponse(
        envelope(_request_id(request), code, message), status_code=status, headers=headers
    )


async def _longshore_error(request: Request, exc: Exception) -> Response:
    status, code = status_of(exc)
    if status >= 500:
        logger.error("admin request failed: %s", exc, extra={"request_id": _request_id(request)})
    message = str(exc) if status < 500 else f"service unavailable: {exc}"
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
    return await _respond(request, status, code, message, headers)


def _field(loc: Sequence[int | str]) -> str:
    parts = [str(part) for part in loc[1:]] if len(loc) > 1 else []
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text


def _declared_body_fields(request: Request) -> set[str]:
    """The field names of the route's JSON body model."""
    names: set[str] = set()
    dependant = getattr(request.scope.get("route"), "dependant", None)
    for param in getattr(dependant, "body_params", ()):
        model = getattr(param.field_info, "annotation", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            names |= {info.alias or name for name, info in model.model_fields.items()}
    return names


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    try:
        mutation = route_mutation(request)
    except NotAuthenticated as refused:
        return await _longshore_error(request, refused)
    # A body carrying a secret names only its declared fields: a value pasted as a key
    # would otherwise be repeated to the caller and into the audit entry.
    declared = _declared_body_fields(request) if mutation and mutation.redacted else None
    messages: list[str] = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        kind = error.get("type", "")
        if kind == "json_invalid":
            messages.append("request body is not valid JSON")
        elif kind == "missing" and loc == ("body",):
            messages.append("body: a JSON object is required")
        elif loc == ("body",):
            messages.append("body: must be a JSON object (Content-Type: application/json)")
        elif declared is not None and len(loc) > 1 and loc[0] == "body" and loc[1] not in declared:
            messages.append("body: a field that is not accepted (not named: it may be a secret)")
        else:
            where = _field(loc) or (str(loc[0]) if loc else "request")
            messages.append(f"{where}: {error.get('msg', 'invalid value')}")
    return await _respond(request, 400, "invalid_request", "; ".join(messages))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    return await _respond(request, exc.status_code, code, message, exc.headers)
