"""Plain configuration values of the admin API, mapped from settings by ``service/``."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 1024 * 1024
"""Request bodies above this are refused with 413 (SPEC §7), never truncated."""

DEFAULT_TOKEN_NAME = "admin-token"  # noqa: S105 - a name, not a secret
"""The actor name of a bare ``WORKER_ADMIN_TOKEN`` secret (one without ``name:``)."""

_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Role(enum.IntEnum):
    """What an authenticated client may do; each role includes the ones below it."""

    VIEWER = 1
    """Read everything."""
    OPERATOR = 2
    """Also pause/resume, replay (and later run and cancel)."""
    ADMIN = 3
    """Also weights, delete and purge (and later define and delete jobs and schedules)."""

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(role.name.lower() for role in cls)
            raise ValueError(f"role must be one of {names}, got {text.strip()!r}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


def parse_roles(text: str) -> dict[str, Role]:
    """Parse ``WORKER_ADMIN_ROLES`` (``"cn=role,cn=role"``) into a mapping; raises
    ``ValueError`` naming the bad entry."""
    roles: dict[str, Role] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, role = entry.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"role entry {entry!r} must look like 'cn=role'")
        roles[name.strip()] = Role.parse(role)
    return roles


def parse_tokens(text: str) -> dict[str, str]:
    """Parse ``WORKER_ADMIN_TOKEN`` into ``{name: secret}``.

    Either one bare secret (its actor name is :data:`DEFAULT_TOKEN_NAME`) or comma-separated
    ``name:secret`` pairs, so several clients can be told apart in the audit log. A bare
    secret must not contain ``:`` or ``,`` (generated tokens are URL-safe base64).
    """
    value = text.strip()
    if not value:
        return {}
    if ":" not in value and "," not in value:
        return {DEFAULT_TOKEN_NAME: value}
    tokens: dict[str, str] = {}
    for raw in value.split(","):
        entry = raw.strip()
        name, sep, secret = entry.partition(":")
        if not sep or not _TOKEN_NAME.fullmatch(name) or not secret:
            raise ValueError(
                "admin token must be a bare secret or 'name:secret' pairs "
                "(name: letters, digits, '.', '_', '-')"
            )
        tokens[name] = secret
    return tokens


CONSOLE_AUTH_MODES = ("bearer", "header", "basic", "none")
BASIC_USER = "admin"
"""The one user name of ``basic`` mode (the actor of its requests)."""
ANONYMOUS_ACTOR = "local"
"""The actor of every request in ``none`` mode (loopback only)."""

HostAuth = Callable[[Any], "tuple[str, Role | str] | None"]
"""The host application's authentication of a mounted admin API: called with each
request (a Starlette ``Request``), returns ``(actor, role)`` or ``None`` to refuse (401)."""


@dataclass(frozen=True, kw_only=True)
class AdminConfig:
    """Everything the admin API needs to know besides its collaborators.

    ``tokens`` maps bearer-token names (the actor) to secrets; empty means bearer auth is
    off (mTLS only). ``roles`` maps certificate CNs or token names to roles; everyone else
    who authenticates gets ``default_role``. ``host_auth``, when set (an admin API mounted in
    another application), replaces all of that: it alone names the actor and the role.
    """

    tokens: Mapping[str, str] = field(default_factory=dict)
    roles: Mapping[str, Role] = field(default_factory=dict)
    default_role: Role = Role.VIEWER
    replay_limit_max: int = 1000
    replay_ids_max: int = 1000
    schedule_run_max: int = 10
    """Run-now calls allowed per schedule within ``schedule_run_window`` seconds."""
    schedule_run_window: float = 60.0
    stale_worker_seconds: float = 60.0
    """When ``POST /maintenance/sweep-stale-workers`` deems a worker stale, unless the request
    says (the service passes its ``WORKER_STALE_WORKER_SECONDS`` rule)."""
    require_approval: bool = False
    approval_token: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    version: str = "0.0.0"
    commit: str = ""
    build_time: str = ""
    host_auth: HostAuth | None = None
    console_auth: str = "bearer"
    """How a browser without a client certificate signs in (:data:`CONSOLE_AUTH_MODES`):
    ``bearer``/``header`` (a token entered once, kept in a session cookie), ``basic`` (user
    :data:`BASIC_USER`, ``basic_password``) or ``none`` (loopback only: everyone is
    :data:`ANONYMOUS_ACTOR`)."""
    basic_password: str | None = None
    token_header: str = "x-longshore-admin-token"  # noqa: S105 - a header name
    """The header that carries a token in ``header`` mode (beside ``Authorization: Bearer``)."""
    read_only: bool = False
    """Every mutation is refused (403 ``read_only``), in the console and the API."""
    secure_cookies: bool = False
    """Session cookies carry ``Secure`` (the listener is HTTPS, or behind a TLS proxy)."""
    console: bool = True
    """Serve the console at ``/`` (off for an admin API mounted in another application)."""
    smtp_configured: bool = False
    """An SMTP server is configured (``WORKER_SMTP_URL``): ``email`` rules may be saved."""
    settings_view: Mapping[str, str] = field(default_factory=dict)
    """The effective settings as shown by the console (variable name -> value; secrets are
    masked before they get here)."""

    def __post_init__(self) -> None:
        if self.console_auth not in CONSOLE_AUTH_MODES:
            raise ValueError(
                f"console auth must be one of {', '.join(CONSOLE_AUTH_MODES)}, "
                f"got {self.console_auth!r}"
            )
        if self.console_auth == "basic" and not self.basic_password:
            raise ValueError("basic auth needs a password")
        if self.require_approval and not self.approval_token:
            raise ValueError("approval is required but no approval token is set")
        if self.replay_limit_max < 1 or self.replay_ids_max < 1:
            raise ValueError("replay caps must be at least 1")
        if self.schedule_run_max < 1:
            raise ValueError("the schedule run cap must be at least 1")
        if not self.schedule_run_window > 0:
            raise ValueError("the schedule run window must be positive")
        if any(not secret for secret in self.tokens.values()):
            raise ValueError("admin tokens must not be empty")

    def role_of(self, actor: str) -> Role:
        return self.roles.get(actor, self.default_role)
