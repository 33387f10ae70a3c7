"""Preparing the admin API listener of ``longshore serve``, before anything else is opened.

:func:`prepare_admin_api` (synchronous, before the runtime) validates the transport, builds
the :class:`~admin.config.AdminConfig` from the settings, loads or generates the bearer
token and binds the listening socket, so that every mistake is reported first. With
``WORKER_ADMIN_TLS_CERT/KEY/CA`` the listener is HTTPS and requires a client certificate
signed by the CA (mTLS, TLS >= 1.2); without them it must be a loopback address and
requires a bearer token: ``WORKER_ADMIN_TOKEN``, else the one kept in the data dir
(:mod:`service.api_token`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from pathlib import Path

from admin.config import (
    ANONYMOUS_ACTOR,
    BASIC_USER,
    DEFAULT_TOKEN_NAME,
    AdminConfig,
    Role,
    parse_tokens,
)
from service.api_server import AdminPlan
from service.api_token import PASSWORD_FILE, TOKEN_FILE, load_or_create_token
from service.build_info import build_info
from service.errors import SettingsError
from service.settings import SECRET_FIELDS, Settings

__all__ = ["is_loopback", "prepare_admin_api"]


def prepare_admin_api(settings: Settings) -> AdminPlan:
    """Validate the admin transport, load or create the token and bind the listener.

    Raises :class:`SettingsError` (one line, naming the variable) for a non-loopback
    address without mTLS, unusable certificate files, a token file that is not private,
    or an address that cannot be bound.
    """
    host, port = settings.admin_listen
    tls = settings.admin_tls
    tokens: dict[str, str] = {}
    token_source: str | None = None
    new_token: str | None = None
    if settings.admin_token is not None:
        tokens = parse_tokens(settings.admin_token.get_secret_value())
        token_source = "WORKER_ADMIN_TOKEN"  # noqa: S105 - a variable name
    if tls is not None:
        _check_tls_files(*tls)
    else:
        _check_plain_listener(settings, host)
        if not tokens:
            path = settings.data_dir / TOKEN_FILE
            secret, created = load_or_create_token(path)
            tokens = parse_tokens(secret)
            token_source = str(path)
            new_token = secret if created else None
    password, new_password = _basic_password(settings)
    config = _admin_config(settings, tokens, password, secure=tls is not None)
    sock = _bind(host, port, settings.admin_http_addr)
    return AdminPlan(
        new_password=new_password,
        host=host,
        port=port,
        tls=tls,
        config=config,
        sock=sock,
        token_source=token_source,
        new_token=new_token,
    )


def _check_plain_listener(settings: Settings, host: str) -> None:
    """A listener without mTLS must be loopback, or behind a TLS proxy with a sign-in
    (``none`` is loopback only)."""
    shown = f"WORKER_ADMIN_HTTP_ADDR={settings.admin_http_addr}"
    if is_loopback(host):
        return
    if not settings.admin_behind_tls_proxy:
        raise SettingsError(
            f"{shown} is not loopback: set WORKER_ADMIN_TLS_CERT/KEY/CA for mTLS "
            "(or WORKER_ADMIN_BEHIND_TLS_PROXY=true behind a TLS-terminating proxy)"
        )
    if settings.admin_auth == "none":
        raise SettingsError(f"{shown} is not loopback: WORKER_ADMIN_AUTH=none is loopback only")


def _basic_password(settings: Settings) -> tuple[str | None, str | None]:
    """The ``basic`` mode's password (``WORKER_ADMIN_PASSWORD``, else one generated into the
    data dir) and, when this start generated it, the password to show once."""
    if settings.admin_auth != "basic":
        return None, None
    if settings.admin_password is not None:
        return settings.admin_password.get_secret_value(), None
    secret, created = load_or_create_token(settings.data_dir / PASSWORD_FILE)
    return secret, secret if created else None


def _roles(settings: Settings, tokens: dict[str, str]) -> dict[str, Role]:
    """``WORKER_ADMIN_ROLES``, with the single bare (or generated) token an admin unless
    listed there: it is the loopback mode's one credential, while the default role
    (``viewer``) is for certificates and named tokens nobody mapped."""
    roles: dict[str, Role] = {}
    if DEFAULT_TOKEN_NAME in tokens:
        roles[DEFAULT_TOKEN_NAME] = Role.ADMIN
    # basic's one user and none's anonymous caller are the mode's one identity.
    if settings.admin_auth == "basic":
        roles[BASIC_USER] = Role.ADMIN
    if settings.admin_auth == "none":
        roles[ANONYMOUS_ACTOR] = Role.ADMIN
    return roles | dict(settings.admin_roles)


def _admin_config(
    settings: Settings,
    tokens: dict[str, str],
    password: str | None = None,
    *,
    secure: bool = False,
) -> AdminConfig:
    approval = settings.admin_approval_token
    build = build_info()
    try:
        return AdminConfig(
            tokens=tokens,
            roles=_roles(settings, tokens),
            default_role=settings.admin_default_role,
            replay_limit_max=settings.admin_replay_limit_max,
            replay_ids_max=settings.admin_replay_ids_max,
            schedule_run_max=settings.admin_schedule_run_max,
            schedule_run_window=settings.admin_schedule_run_window,
            stale_worker_seconds=settings.effective_stale_worker_seconds,
            require_approval=settings.admin_require_approval,
            approval_token=approval.get_secret_value() if approval is not None else None,
            version=build.version,
            commit=build.commit,
            build_time=build.build_time,
            console_auth=settings.admin_auth,
            basic_password=password,
            token_header=settings.admin_token_header.lower(),
            read_only=settings.admin_read_only,
            secure_cookies=secure or settings.admin_behind_tls_proxy,
            smtp_configured=settings.smtp_server is not None,
            settings_view=settings_view(settings),
        )
    except ValueError as exc:  # checked by Settings already; kept as a clear error
        raise SettingsError(f"admin API settings: {exc}") from None


def settings_view(settings: Settings) -> dict[str, str]:
    """Every setting as ``WORKER_NAME -> value`` for the console, secrets shown as set or
    not (never their value)."""
    shown: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        variable = f"WORKER_{name.upper()}"
        if name in SECRET_FIELDS or name.endswith(("password", "_token", "secret")):
            shown[variable] = "(not set)" if value is None else "(set, hidden)"
        elif name == "database_url" and value:
            shown[variable] = mask_url(str(value))
        else:
            shown[variable] = "" if value is None else str(value)
    return shown


def mask_url(url: str) -> str:
    """``url`` without its password."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or a name) is only reachable from this machine: an
    address in 127.0.0.0/8 or ``::1``, or a name all of whose addresses are."""
    try:
        return _loopback_ip(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        return bool(infos) and all(_loopback_ip(str(info[4][0])) for info in infos)
    except ValueError:
        return False


def _loopback_ip(text: str) -> bool:
    address = ipaddress.ip_address(text.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _check_tls_files(cert: Path, key: Path, ca: Path) -> None:
    names = ("WORKER_ADMIN_TLS_CERT", "WORKER_ADMIN_TLS_KEY", "WORKER_ADMIN_TLS_CA")
    for name, path in zip(names, (cert, key, ca), strict=True):
        if not path.is_file():
            raise SettingsError(f"{name}={path}: no such file")
        if not os.access(path, os.R_OK):
            raise SettingsError(f"{name}={path}: not readable")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"WORKER_ADMIN_TLS_CERT={cert} / WORKER_ADMIN_TLS_KEY={key}: cannot load the "
            f"certificate and its key ({exc})"
        ) from None
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(f"WORKER_ADMIN_TLS_CA={ca}: cannot load the CA ({exc})") from None


def _bind(host: str, port: int, shown: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (bound now, so a busy port is reported
    before anything else is opened)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise SettingsError(f"WORKER_ADMIN_HTTP_ADDR={shown}: cannot listen: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
        sock.set_inheritable(False)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise SettingsError(f"WORKER_ADMIN_HTTP_ADDR={shown}: cannot listen: {reason}") from None
    return sock
