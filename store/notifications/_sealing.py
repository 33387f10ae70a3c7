"""What both notification-rule backends share: sealing a rule's secret before it is stored,
and keeping the stored one when an edit leaves it out. Nothing here opens a secret: only a
delivery does (``service.notifications.delivery``)."""

from __future__ import annotations

import dataclasses

from store.notifications.models import Channel, NotificationRule, secret_context
from store.secrets.crypto import SecretBox


def sealed(box: SecretBox, rule: NotificationRule) -> NotificationRule:
    """``rule`` with its clear secret (if any) sealed with ``box`` in its place."""
    if rule.secret is None:
        return rule
    value = rule.secret.encode("utf-8")
    return dataclasses.replace(
        rule, secret=None, sealed_secret=box.seal(secret_context(rule.name), value)
    )


def keeping_secret(rule: NotificationRule, stored: NotificationRule | None) -> NotificationRule:
    """``rule``, with ``stored``'s secret when ``rule`` sets none (the secret is write-only:
    a client that cannot read it can still edit the rule). An ``email`` rule keeps none: it
    signs nothing (a rule turned from a webhook into an email rule drops its secret)."""
    if rule.secret is not None or stored is None or rule.channel is Channel.EMAIL:
        return rule
    return dataclasses.replace(rule, secret=stored.secret, sealed_secret=stored.sealed_secret)
