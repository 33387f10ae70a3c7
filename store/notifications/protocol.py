"""The storage contract of notification rules (every backend keeps it).

A rule's secret is kept only sealed with the secrets key (see
:mod:`store.notifications.models`): every rule a store returns has ``secret=None`` and, when
one is set, ``sealed_secret``."""

from __future__ import annotations

from typing import Protocol

from store.notifications.models import NotificationRule


class NotificationStore(Protocol):
    """Notification rules by name, shared by every process on the database."""

    async def upsert(self, rule: NotificationRule) -> tuple[NotificationRule, bool]:
        """Save ``rule`` (checked by :func:`~store.notifications.models.check_rule`, raising
        ``InvalidRule``), replacing the rule of that name; return the stored rule and whether
        it was created. A rule whose ``secret`` is ``None`` keeps the secret stored before
        (the secret is write-only: a client that cannot read it can still edit the rule);
        a clear ``secret`` is sealed before it is written."""
        ...

    async def seal_plain_secrets(self) -> int:
        """Seal every secret still stored in clear (saved before rule secrets were sealed
        at rest), leaving the rest of each rule and its ``updated_at`` as they are; return
        how many rules were rewritten. ``serve`` and ``worker`` call it when they start."""
        ...

    async def get(self, name: str) -> NotificationRule | None:
        """The rule named ``name``, or ``None``."""
        ...

    async def list_all(self) -> list[NotificationRule]:
        """Every rule, by name."""
        ...

    async def delete(self, name: str) -> bool:
        """Delete the rule; whether it existed."""
        ...
