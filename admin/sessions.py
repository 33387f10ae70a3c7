"""Console sessions: who signed in, and the CSRF token of their mutations.

A session is created when a browser signs in with a token (``bearer`` and ``header`` modes)
or, for a caller who authenticates on every request (client certificate, HTTP Basic,
``none``), when it first loads a console page: either way the browser gets an opaque id in an
``HttpOnly; SameSite=Strict`` cookie and the page carries the session's CSRF token, which the
console's script sends in :data:`CSRF_HEADER` on every mutation (:mod:`admin.mutations`).

Sessions live in memory (a restart signs everyone out), expire :data:`SESSION_SECONDS` after
they were made, and at most :data:`MAX_SESSIONS` are kept, :data:`PER_ACTOR` of one actor (the
oldest is dropped first).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from admin.config import Role

COOKIE = "longshore_session"
CSRF_HEADER = "x-longshore-csrf"
SESSION_SECONDS = 8 * 3600.0
MAX_SESSIONS = 10_000
PER_ACTOR = 64
"""At most this many sessions of one actor are kept (its oldest is dropped first), so one
caller making sessions without end cannot push everyone else's out of the store."""


@dataclass(frozen=True, kw_only=True)
class Session:
    """One signed-in browser. ``via`` is how it authenticated (``token`` sessions carry the
    identity; the others only the CSRF token, the caller proving who it is each time)."""

    id: str
    actor: str
    role: Role
    via: str
    csrf: str
    expires: float

    def csrf_matches(self, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf.encode())


@dataclass
class SessionStore:
    """The app's sessions (``app.state.admin_sessions``)."""

    lifetime: float = SESSION_SECONDS
    limit: int = MAX_SESSIONS
    _sessions: OrderedDict[str, Session] = field(default_factory=OrderedDict)

    def create(self, *, actor: str, role: Role, via: str) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            actor=actor,
            role=role,
            via=via,
            csrf=secrets.token_urlsafe(32),
            expires=time.monotonic() + self.lifetime,
        )
        self._sessions[session.id] = session
        own = [key for key, held in self._sessions.items() if held.actor == actor]
        for key in own[: max(len(own) - PER_ACTOR, 0)]:
            del self._sessions[key]
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= time.monotonic():
            del self._sessions[session_id]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)


def sessions_of(app: Any) -> SessionStore:
    """The app's session store (made on first use)."""
    store: SessionStore | None = getattr(app.state, "admin_sessions", None)
    if store is None:
        store = SessionStore()
        app.state.admin_sessions = store
    return store


def cookie_session(request: Any) -> Session | None:
    """The live session named by the request's cookie, if any."""
    return sessions_of(request.app).get(request.cookies.get(COOKIE))
