"""Console sessions (pure logic): one caller making sessions without end cannot sign the
others out."""

from __future__ import annotations

from admin.config import Role
from admin.sessions import PER_ACTOR, SessionStore


def test_one_actor_making_sessions_without_end_evicts_only_its_own() -> None:
    store = SessionStore(limit=PER_ACTOR * 4)
    admin = store.create(actor="alice", role=Role.ADMIN, via="token")
    made = [store.create(actor="vic", role=Role.VIEWER, via="token") for _ in range(10_000)]
    assert store.get(admin.id) == admin
    assert len(store) == PER_ACTOR + 1
    assert store.get(made[-1].id) == made[-1]  # the newest of vic's are kept
    assert store.get(made[0].id) is None


def test_the_oldest_session_goes_when_the_store_is_full() -> None:
    store = SessionStore(limit=3)
    first, *rest = [store.create(actor=f"a{n}", role=Role.VIEWER, via="token") for n in range(4)]
    assert store.get(first.id) is None
    assert all(store.get(session.id) == session for session in rest)
