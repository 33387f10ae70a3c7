"""Mutating routes: authentication, role, approval and the audit entry, in one dependency.

Every mutation, accepted or refused (403 role, 403 approval, 400 validation, 404, 409,
429), is recorded in the audit log before the response is sent (SPEC §6-7). A route
declares ``audit: Annotated[Mutation, Depends(mutation("queue.pause", Role.OPERATOR,
target="name", risky=True))]`` and calls ``await audit.ok(detail)`` after its change; the
error handlers of :mod:`admin.app` call :meth:`Mutation.refused` for everything else.

The entry is part of the mutation: once the checks pass, the dependency *begins* it
(:meth:`store.events.AuditLog.begin`: every field checked, the intent made durable) before the
route runs, so an entry that cannot be written stops the mutation before it changes anything,
and :meth:`Mutation.ok` / :meth:`Mutation.refused` finish it (a failed final write is kept and
retried by the audit log, never lost).

A request without valid credentials (401) is not audited: there is no actor to record and
an unauthenticated client must not be able to fill the audit log.

**Cross-site requests.** A browser attaches a client certificate (or a session cookie) to a
request that another site's page makes, so a mutation must come from the API's own origin or
from a client that is not a browser. A mutation is refused (403 ``cross_site_request``,
audited) when ``Sec-Fetch-Site`` says ``cross-site`` or ``same-site``, or, without
``Sec-Fetch-Site: same-origin``, when ``Origin`` names another origin (or ``null``: the
console's pages use ``Referrer-Policy: no-referrer``, under which a browser's same-origin POST
says ``Origin: null`` but ``Sec-Fetch-Site: same-origin``); programs (the CLI, scripts, a seed
003 UI's server) send neither header. A body of one of the types an HTML form can send
without a preflight (``application/x-www-form-urlencoded``, ``multipart/form-data``,
``text/plain``) is refused with 415 on every mutation: the API reads JSON only.

**CSRF.** A mutation made by a browser also needs its console session's token in
``x-longshore-csrf`` (:func:`check_csrf`); with ``read_only`` every mutation is refused
(403 ``read_only``).
"""

from __future__ import annotations

import hmac
import json
import logging

from fastapi import Request

from admin.auth import Identity, check_role, config_of, current_identity
from admin.config import Role
from admin.errors import (
    ApprovalRequired,
    CrossSiteRequest,
    CsrfRejected,
    ReadOnly,
    UnsupportedMediaType,
)
from admin.schemas import storable
from admin.sessions import CSRF_HEADER, cookie_session
from store.events import AuditLog, AuditStatus
from store.events.audit import PendingEntry

logger = logging.getLogger(__name__)

APPROVAL_HEADER = "x-admin-approval"


class Mutation:
    """One audited mutation in progress; records exactly one audit entry."""

    def __init__(
        self,
        *,
        audit: AuditLog,
        identity: Identity,
        request_id: str,
        action: str,
        target: str,
        body: bytes,
        redacted: bool = False,
    ) -> None:
        self.redacted = redacted
        """The body carries a secret: neither hashed nor named in messages."""
        self._audit = audit
        self.identity = identity
        self.request_id = request_id
        self.action = action
        self.target = target
        self.body = body
        self.recorded = False
        self._pending: PendingEntry | None = None

    @property
    def actor(self) -> str:
        return self.identity.actor

    async def begin(self) -> None:
        """Check and journal the entry before the change (raises when it cannot be kept)."""
        self._pending = await self._audit.begin(
            actor=self.identity.actor,
            request_id=self.request_id,
            action=self.action,
            target=self.target,
            body=self.body,
        )

    async def ok(self, detail: str = "") -> None:
        await self._record(AuditStatus.OK, detail)

    async def refused(self, detail: str) -> None:
        await self._record(AuditStatus.ERROR, detail)

    async def _record(self, status: AuditStatus, detail: str) -> None:
        if self.recorded:
            return
        self.recorded = True
        if self._pending is not None:
            await self._audit.finish(self._pending, status, detail)
            return
        await self._audit.record(
            actor=self.identity.actor,
            request_id=self.request_id,
            action=self.action,
            target=self.target,
            status=status,
            body=self.body,
            detail=detail,
        )


def pending_mutation(request: Request) -> Mutation | None:
    """The request's mutation not yet audited, if any (for the error handlers)."""
    mutation: Mutation | None = getattr(request.state, "mutation", None)
    if mutation is None or mutation.recorded:
        return None
    return mutation


class MutationDependency:
    """The dependency :func:`mutation` returns; routes are found to be mutations by it."""

    def __init__(
        self,
        action: str,
        role: Role,
        *,
        target: str | None,
        fixed_target: str,
        risky: bool,
        body_target: str | None = None,
        redact_body: bool = False,
    ) -> None:
        self.redact_body = redact_body
        self.action = action
        self.role = role
        self.target = target
        self.fixed_target = fixed_target
        self.risky = risky
        self.body_target = body_target

    def _target(self, request: Request, body: bytes) -> str:
        if self.target:
            return str(request.path_params.get(self.target, ""))
        if self.body_target:
            decoded = getattr(request.state, "body_object", None)  # a YAML body, decoded
            if decoded is not None:
                return object_field(decoded, self.body_target)
            return body_field(body, self.body_target)
        return self.fixed_target

    def context(self, request: Request) -> Mutation:
        """Authenticate (401 is raised, not audited) and register the audit context."""
        identity = current_identity(request)
        body: bytes = b"" if self.redact_body else getattr(request.state, "raw_body", b"")
        current = Mutation(
            audit=request.app.state.admin_services.audit,
            identity=identity,
            request_id=request.state.request_id,
            action=self.action,
            target=self._target(request, body),
            body=body,
            redacted=self.redact_body,
        )
        request.state.mutation = current
        return current

    async def __call__(self, request: Request) -> Mutation:
        current = self.context(request)
        check_same_origin(request)
        config = config_of(request)
        if config.read_only:
            raise ReadOnly(
                "the admin API is read-only (serve --read-only / WORKER_ADMIN_READ_ONLY): "
                "mutations are turned off"
            )
        check_csrf(request, current.identity)
        check_role(current.identity, self.role)
        if self.risky and config.require_approval:
            presented = request.headers.get(APPROVAL_HEADER, "").encode()
            expected = (config.approval_token or "").encode()
            if not presented or not hmac.compare_digest(presented, expected):
                raise ApprovalRequired(
                    "this action needs approval: send a valid X-Admin-Approval header"
                )
        await current.begin()
        return current


_AMBIENT = frozenset({"session", "basic", "none"})
"""Credentials a browser attaches to every request by itself (a cookie, cached Basic
credentials, none at all): a mutation made with them must prove it comes from the console."""
_BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode")


def check_csrf(request: Request, identity: Identity) -> None:
    """Refuse a mutation a browser sent without its console session's CSRF token.

    A browser's mutation is one made with ambient credentials (:data:`_AMBIENT`), or with a
    client certificate by a browser (it sends ``Origin`` or ``Sec-Fetch-*``): it must carry
    :data:`~admin.sessions.CSRF_HEADER` equal to the token of the session its cookie names,
    a session of the same actor. A bearer token is proof enough (a page cannot make a
    browser send one to another origin), and programs send no browser headers.
    """
    browser = identity.via in _AMBIENT or (
        identity.via == "certificate" and any(name in request.headers for name in _BROWSER_HEADERS)
    )
    if not browser:
        return
    session = cookie_session(request)
    presented = request.headers.get(CSRF_HEADER, "").strip()
    if session is None or session.actor != identity.actor or not session.csrf_matches(presented):
        raise CsrfRejected(
            f"refused a browser mutation without the console's CSRF token (the {CSRF_HEADER} "
            "header of a signed-in console session)"
        )


_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_CROSS_SITE = frozenset({"cross-site", "same-site"})


def check_same_origin(request: Request) -> None:
    """Refuse a mutation a browser sent from another site, or with a form body (see the
    module docstring)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in _FORM_TYPES:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not accepted: send JSON (application/json)"
            " (a job definition may also be YAML: application/yaml)"
        )
    refusal = _cross_site(request)
    if refusal is not None:
        raise CrossSiteRequest(f"{refusal}: mutations must be same-origin")


def check_same_origin_form(request: Request) -> None:
    """The console's own forms (sign-in, sign-out): refused unless sent from its origin."""
    refusal = _cross_site(request)
    if refusal is not None:
        raise CrossSiteRequest(f"{refusal}: the console's forms must be sent from its pages")


def _cross_site(request: Request) -> str | None:
    """Why the request comes from another site, or ``None``. ``Sec-Fetch-Site`` decides when
    the browser sent it: under ``Referrer-Policy: no-referrer`` a browser's same-origin POST
    carries ``Origin: null``, so ``Origin`` is only compared when it is absent."""
    fetch_site = request.headers.get("sec-fetch-site", "").strip().lower()
    if fetch_site in _CROSS_SITE:
        return f"refused a {fetch_site} request"
    if fetch_site == "same-origin":
        return None
    origin = request.headers.get("origin")
    if origin is not None and origin.strip().lower() != _own_origin(request):
        return "refused a request from another origin"
    return None


def _own_origin(request: Request) -> str:
    """``scheme://host[:port]`` of this API as the client addressed it."""
    scheme = request.url.scheme.lower()
    host = request.headers.get("host", "").strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    if default and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def mutation(
    action: str,
    role: Role,
    *,
    target: str | None = None,
    body_target: str | None = None,
    fixed_target: str = "",
    risky: bool = False,
    redact_body: bool = False,
) -> MutationDependency:
    """A dependency that authenticates, registers the audit context, then checks the role
    and (for ``risky`` mutations when approval is required) ``X-Admin-Approval``.

    The audit target is the path parameter named ``target``, else the top-level string
    field ``body_target`` of the JSON body (e.g. ``"name"`` when creating a job: also for
    refusals recorded before the body is validated), else ``fixed_target`` (e.g. ``"*"``
    for the global pause). With ``redact_body`` (a body carrying a secret value) the
    entry's ``payloadHash`` is that of an empty body: no trace of the value is kept.
    """
    return MutationDependency(
        action,
        role,
        target=target,
        fixed_target=fixed_target,
        risky=risky,
        body_target=body_target,
        redact_body=redact_body,
    )


TARGET_MAX = 256
"""The longest audit target taken from a request body (longer names are cut)."""


def body_field(raw: bytes, field: str) -> str:
    """The string ``field`` of the JSON object ``raw``, made storable ("" when absent)."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return ""
    return object_field(body, field)


def object_field(body: object, field: str) -> str:
    """The string ``field`` of the decoded body ``body``, made storable ("" when absent)."""
    value = body.get(field) if isinstance(body, dict) else None
    return storable(value[:TARGET_MAX]) if isinstance(value, str) else ""


def route_mutation(request: Request) -> Mutation | None:
    """The audit context of a mutating route whose dependencies never ran (FastAPI parses
    the JSON body before solving dependencies, so a malformed body skips them). Raises
    :class:`NotAuthenticated` when the caller has no valid credentials."""
    pending = pending_mutation(request)
    if pending is not None:
        return pending
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    for dependency in getattr(dependant, "dependencies", ()):
        if isinstance(dependency.call, MutationDependency):
            return dependency.call.context(request)
    return None
