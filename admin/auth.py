"""Who is calling and what they may do.

Identity comes from the host application's callable when the API is mounted in one
(:attr:`AdminConfig.host_auth`); otherwise from the TLS client certificate (put into
``scope["extensions"]["tls"]["client_cert"]`` by :class:`admin.tls.ClientCertH11Protocol`)
or, when no certificate was presented, from a bearer token (``Authorization: Bearer``,
compared in constant time; the actor is the token's name). The role is looked up by actor in
:attr:`AdminConfig.roles`, else :attr:`AdminConfig.default_role`.

A certificate's actor is its subject CN, else its first subjectAltName of type URI, else DNS,
else email. When a certificate was presented, it alone identifies the caller: a bearer token
sent along is never looked at, and a certificate that names nobody is refused (401) rather
than falling back to the token. Surrounding whitespace is dropped; an actor that is then
empty, or that holds a control or format character (a newline would forge a log line, a bidi
override would disguise a name), is refused with 401 naming the rule, so every
authenticated actor can be written to the audit log.

Routes declare what they need with the ``Annotated`` aliases :data:`RequireViewer`,
:data:`RequireOperator` and :data:`RequireAdmin`; mutations use :mod:`admin.mutations`,
which also audits refusals.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from admin.config import ANONYMOUS_ACTOR, BASIC_USER, AdminConfig, Role
from admin.errors import Forbidden, NotAuthenticated
from admin.sessions import cookie_session


@dataclass(frozen=True, kw_only=True)
class Identity:
    """An authenticated caller: ``actor`` is the certificate CN or the token name."""

    actor: str
    role: Role
    via: str  # "certificate" | "token" | "host" | "session" | "basic" | "none"


def certificate_cn(cert: Any) -> str | None:
    """The subject commonName of a certificate as ``SSLSocket.getpeercert()`` returns it
    (``None`` when absent or only whitespace)."""
    if not isinstance(cert, dict):
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and str(value).strip():
                return str(value).strip()
    return None


_SAN_ORDER = ("URI", "DNS", "email")


def certificate_actor(cert: Any) -> str | None:
    """Who a certificate names: its CN, else its first subjectAltName of type URI, then
    DNS, then email (``None`` when it names nobody)."""
    cn = certificate_cn(cert)
    if cn is not None or not isinstance(cert, dict):
        return cn
    names = [(str(kind), str(value).strip()) for kind, value in cert.get("subjectAltName", ())]
    for wanted in _SAN_ORDER:
        for kind, value in names:
            if kind == wanted and value:
                return value
    return None


def checked_actor(actor: str, source: str) -> str:
    """``actor`` without surrounding whitespace; raises :class:`NotAuthenticated` when it is
    then empty or holds a control or format character."""
    actor = actor.strip()
    if not actor:
        raise NotAuthenticated(f"the {source} names no one")
    if any(unicodedata.category(char)[0] == "C" for char in actor):
        raise NotAuthenticated(
            f"the {source} has a control or format character in its name; it is not accepted"
        )
    return actor


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _token_name(config: AdminConfig, presented: str) -> str | None:
    """The name of the token matching ``presented``; every token is compared (in constant
    time) so the timing does not tell which names exist."""
    found: str | None = None
    given = presented.encode()
    for name, secret in config.tokens.items():
        if hmac.compare_digest(given, secret.encode()):
            found = name
    return found


def authenticate(request: Request, config: AdminConfig) -> Identity:
    """The caller's identity; raises :class:`NotAuthenticated` (401) without valid
    credentials."""
    if config.host_auth is not None:
        return _host_identity(request, config)
    tls = request.scope.get("extensions", {}).get("tls") or {}
    cert = tls.get("client_cert")
    if cert:
        named = certificate_actor(cert)
        if named is None:
            raise NotAuthenticated(
                "the client certificate names no one: it needs a CN or a subjectAltName"
            )
        actor = checked_actor(named, "client certificate")
        return Identity(actor=actor, role=config.role_of(actor), via="certificate")
    presented = _bearer(request)
    if presented is None and config.console_auth == "header":
        presented = request.headers.get(config.token_header, "").strip() or None
    if presented is not None:
        name = _token_name(config, presented)
        if name is None:
            raise NotAuthenticated("invalid bearer token")
        return Identity(actor=name, role=config.role_of(name), via="token")
    if config.console_auth == "basic":
        basic = _basic(request, config)
        if basic is not None:
            return basic
    session = cookie_session(request)
    if session is not None and session.via == "token":
        return Identity(actor=session.actor, role=session.role, via="session")
    if config.console_auth == "none":
        _check_loopback_request(request)
        actor = ANONYMOUS_ACTOR
        return Identity(actor=actor, role=config.role_of(actor), via="none")
    raise NotAuthenticated("authentication required: a client certificate or a bearer token")


def _loopback_host(name: str) -> bool:
    """Whether ``name`` (a ``Host`` header's host part) always means this machine: a
    loopback address, ``localhost`` or a name under ``.localhost`` (RFC 6761)."""
    name = name.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost" or name.endswith(".localhost")


def _check_loopback_request(request: Request) -> None:
    """``none`` mode answers only a loopback client that addressed a loopback name: a page
    of another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) is, to the
    browser, of its own origin, and would otherwise act as ``local``."""
    client = request.client.host if request.client is not None else ""
    host = request.headers.get("host", "")
    name = host[: host.rindex("]") + 1] if host.startswith("[") and "]" in host else host
    name = name.rpartition(":")[0] if ":" in name and not name.endswith("]") else name
    if not (_loopback_host(client) and _loopback_host(name)):
        raise NotAuthenticated(
            "WORKER_ADMIN_AUTH=none answers only requests from this machine addressed to "
            "localhost or a loopback address"
        )


def _basic(request: Request, config: AdminConfig) -> Identity | None:
    """The ``basic`` mode's user, when the request carries its credentials (``None`` without
    a Basic header; :class:`NotAuthenticated` for wrong ones)."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise NotAuthenticated("malformed Basic credentials") from None
    expected = (config.basic_password or "").encode()
    same_user = hmac.compare_digest(user.encode(), BASIC_USER.encode())
    if not (hmac.compare_digest(password.encode(), expected) and same_user):
        raise NotAuthenticated("invalid user name or password")
    return Identity(actor=BASIC_USER, role=config.role_of(BASIC_USER), via="basic")


def _host_identity(request: Request, config: AdminConfig) -> Identity:
    assert config.host_auth is not None
    found = config.host_auth(request)
    if found is None:
        raise NotAuthenticated("authentication required")
    actor, role = found
    actor = checked_actor(actor, "host application's identity")
    return Identity(
        actor=actor, role=role if isinstance(role, Role) else Role.parse(role), via="host"
    )


def config_of(request: Request) -> AdminConfig:
    config: AdminConfig = request.app.state.admin_config
    return config


def current_identity(request: Request) -> Identity:
    """Authenticate once per request (cached in ``request.state``)."""
    identity: Identity | None = getattr(request.state, "identity", None)
    if identity is None:
        identity = authenticate(request, config_of(request))
        request.state.identity = identity
    return identity


def check_role(identity: Identity, needed: Role) -> None:
    if identity.role < needed:
        raise Forbidden(
            f"role {identity.role.label!r} of {identity.actor!r} may not do this; "
            f"it needs {needed.label!r}"
        )


class _Require:
    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(self, request: Request) -> Identity:
        identity = current_identity(request)
        check_role(identity, self.role)
        return identity


RequireViewer = Annotated[Identity, Depends(_Require(Role.VIEWER))]
RequireOperator = Annotated[Identity, Depends(_Require(Role.OPERATOR))]
RequireAdmin = Annotated[Identity, Depends(_Require(Role.ADMIN))]
