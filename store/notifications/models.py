"""Notification rules as persisted: frozen, keyword-only, checked by :func:`check_rule`.

A rule says which **events** of which runs or schedules (its **scope**: every job — the
global default —, one job, or one schedule) are told to one **channel** at one URL:

- ``webhook``: a JSON body, signed with the rule's shared ``secret`` (HMAC-SHA256);
- ``chat``: a Slack/Mattermost-style ``{"text": ...}`` body made from ``template``;
- ``email``: a mail to the addresses of a ``mailto:`` URL (:mod:`.mailto`), its body made
  from ``template``, sent through the operator's SMTP server (``WORKER_SMTP_*``).

The ``secret`` is write-only: a request sets it in clear (``secret``), the store keeps it
only sealed with the secrets key (``sealed_secret``: AES-256-GCM, the same key and scheme as
job secrets, bound to :func:`secret_context` of the rule's name), and only a delivery opens it
to sign its body. No rule read from the store carries it in clear, and
:meth:`NotificationRule.public` shows only whether one is set.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from store.notifications.errors import InvalidRule
from store.notifications.mailto import parse_mailto

RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_URL = 2048
MAX_SECRET = 512
MAX_TEMPLATE = 4000
MAX_TIMEOUT_SECONDS = 60.0
MAX_IN_A_ROW = 100
MAX_WARN_AFTER_SECONDS = 7 * 86400
DEFAULT_TEMPLATE = "Longshore: {event} of {subject} ({status}) {error}"
SEALING_CONTEXT_PREFIX = "notification-rule/"
"""Rule secrets are sealed for ``notification-rule/<name>``: a name no job secret can have
(job secret names hold no ``/``), so neither kind of ciphertext opens as the other."""


def secret_context(rule_name: str) -> str:
    """The associated data a rule's secret is sealed with (its rule's name, namespaced)."""
    return SEALING_CONTEXT_PREFIX + rule_name


class RuleEvent(enum.StrEnum):
    """What a rule can be told about."""

    FAILED = "failed"
    """A run failed (or timed out)."""
    FAILED_IN_A_ROW = "failed_in_a_row"
    """The ``failuresInARow``-th failed run in a row (told once per streak)."""
    RECOVERED = "recovered"
    """The first successful run after one or more failed ones."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """A run's last attempt failed: the task is dead-lettered."""
    TIMED_OUT = "timed_out"
    """A run was stopped at its timeout."""
    SLOW = "slow"
    """A run ran longer than ``warnAfterSeconds`` (a warning: the run is not stopped)."""
    MISSED = "missed"
    """A schedule's firing was not enqueued within its grace."""


class Channel(enum.StrEnum):
    WEBHOOK = "webhook"
    CHAT = "chat"
    EMAIL = "email"


class RuleScope(enum.StrEnum):
    GLOBAL = "global"
    """Every job and schedule that has no rule of its own (the default)."""
    JOB = "job"
    SCHEDULE = "schedule"


@dataclass(frozen=True, kw_only=True)
class NotificationRule:
    """One rule; see the module docstring. ``target`` is the job or schedule name (``""``
    for the global scope)."""

    name: str
    scope: RuleScope
    events: tuple[RuleEvent, ...]
    channel: Channel
    url: str
    target: str = ""
    secret: str | None = field(default=None, repr=False)
    """The secret in clear, as a request sets it; ``None`` in every rule the store returns."""
    sealed_secret: bytes | None = field(default=None, repr=False)
    """The secret as stored, sealed for :func:`secret_context` of ``name``."""
    template: str = DEFAULT_TEMPLATE
    failures_in_a_row: int = 3
    warn_after_seconds: int = 0
    timeout_seconds: float = 10.0
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def applies_to(self, *, job: str | None, schedule: str | None) -> bool:
        """Whether the rule's scope covers a run of ``job`` fired by ``schedule``."""
        if self.scope is RuleScope.GLOBAL:
            return True
        if self.scope is RuleScope.JOB:
            return job is not None and job == self.target
        return schedule is not None and schedule == self.target

    @property
    def secret_set(self) -> bool:
        """Whether the rule has a secret (in clear or sealed)."""
        return bool(self.secret) or bool(self.sealed_secret)

    def public(self) -> dict[str, Any]:
        """The rule as the API shows it (camelCase): never the secret, only whether one
        is set."""
        return {
            "name": self.name,
            "scope": self.scope.value,
            "target": self.target,
            "events": [event.value for event in self.events],
            "channel": self.channel.value,
            "url": self.url,
            "secretSet": self.secret_set,
            "template": self.template,
            "failuresInARow": self.failures_in_a_row,
            "warnAfterSeconds": self.warn_after_seconds,
            "timeoutSeconds": self.timeout_seconds,
            "enabled": self.enabled,
            "createdAtMs": _ms(self.created_at),
            "updatedAtMs": _ms(self.updated_at),
        }


def _ms(moment: datetime | None) -> int:
    return -1 if moment is None else int(moment.timestamp() * 1000)


def check_rule(rule: NotificationRule) -> NotificationRule:
    """``rule`` if it follows every rule; raises :class:`InvalidRule` naming the field."""
    if not isinstance(rule.name, str) or not RULE_NAME.fullmatch(rule.name):
        raise InvalidRule("name", "must be 1-128 letters, digits, '.', '_' or '-'")
    if rule.scope is RuleScope.GLOBAL:
        if rule.target:
            raise InvalidRule("target", "a global rule names no job or schedule")
    elif not TARGET_NAME.fullmatch(rule.target or ""):
        raise InvalidRule("target", f"a {rule.scope.value} rule names its {rule.scope.value}")
    if not rule.events:
        raise InvalidRule("events", "name at least one event")
    if len(set(rule.events)) != len(rule.events):
        raise InvalidRule("events", "an event is named twice")
    if RuleEvent.MISSED in rule.events and rule.scope is RuleScope.JOB:
        raise InvalidRule("events", "'missed' is told of schedules: use a schedule or global rule")
    _check_url(rule.url, rule.channel)
    if rule.secret is not None and not (1 <= len(rule.secret) <= MAX_SECRET):
        raise InvalidRule("secret", f"must be 1-{MAX_SECRET} characters")
    if rule.channel is Channel.EMAIL and rule.secret is not None:
        raise InvalidRule("secret", "an email rule has no secret (nothing is signed)")
    if rule.channel is Channel.WEBHOOK and not rule.secret_set:
        raise InvalidRule("secret", "a webhook rule needs a shared secret to sign with")
    if not isinstance(rule.template, str) or not 1 <= len(rule.template) <= MAX_TEMPLATE:
        raise InvalidRule("template", f"must be 1-{MAX_TEMPLATE} characters")
    if not 1 <= rule.failures_in_a_row <= MAX_IN_A_ROW:
        raise InvalidRule("failuresInARow", f"must be 1-{MAX_IN_A_ROW}")
    if not 0 <= rule.warn_after_seconds <= MAX_WARN_AFTER_SECONDS:
        raise InvalidRule("warnAfterSeconds", f"must be 0-{MAX_WARN_AFTER_SECONDS}")
    if RuleEvent.SLOW in rule.events and rule.warn_after_seconds == 0:
        raise InvalidRule("warnAfterSeconds", "a 'slow' rule needs warnAfterSeconds above 0")
    if not 0.1 <= rule.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise InvalidRule("timeoutSeconds", f"must be 0.1-{MAX_TIMEOUT_SECONDS:.0f}")
    return rule


def _check_url(url: str, channel: Channel) -> None:
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL:
        raise InvalidRule("url", f"must be 1-{MAX_URL} characters")
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise InvalidRule("url", "must not hold spaces or control characters")
    if channel is Channel.EMAIL:
        try:
            parse_mailto(url)
        except ValueError as exc:
            raise InvalidRule("url", str(exc)) from None
        return
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidRule("url", "must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise InvalidRule("url", "must not carry credentials (sign with the secret instead)")


def rule_to_row(rule: NotificationRule) -> dict[str, Any]:
    """The stored JSON body of a rule: its secret only sealed (base64), never in clear."""
    if rule.secret is not None:
        raise ValueError("a rule's secret is sealed before it is stored")
    sealed = rule.sealed_secret
    return {
        "scope": rule.scope.value,
        "target": rule.target,
        "events": [event.value for event in rule.events],
        "channel": rule.channel.value,
        "url": rule.url,
        "sealedSecret": None if sealed is None else base64.b64encode(sealed).decode("ascii"),
        "template": rule.template,
        "failuresInARow": rule.failures_in_a_row,
        "warnAfterSeconds": rule.warn_after_seconds,
        "timeoutSeconds": rule.timeout_seconds,
        "enabled": rule.enabled,
    }


def rule_from_row(
    name: str, body: dict[str, Any], created_at: datetime, updated_at: datetime
) -> NotificationRule:
    """The rule of a stored body. A body written before secrets were sealed holds its secret
    in clear (``"secret"``): the rule then carries it in ``secret``, and the store seals it
    before returning the rule (:func:`plain_secret` finds such bodies)."""
    sealed = body.get("sealedSecret")
    return NotificationRule(
        name=name,
        scope=RuleScope(body["scope"]),
        target=str(body.get("target") or ""),
        events=tuple(RuleEvent(event) for event in body["events"]),
        channel=Channel(body["channel"]),
        url=str(body["url"]),
        secret=plain_secret(body),
        sealed_secret=None if sealed is None else _unbase64(str(sealed)),
        template=str(body.get("template") or DEFAULT_TEMPLATE),
        failures_in_a_row=int(body.get("failuresInARow", 3)),
        warn_after_seconds=int(body.get("warnAfterSeconds", 0)),
        timeout_seconds=float(body.get("timeoutSeconds", 10.0)),
        enabled=bool(body.get("enabled", True)),
        created_at=created_at,
        updated_at=updated_at,
    )


def plain_secret(body: dict[str, Any]) -> str | None:
    """The secret a stored body holds in clear (written before secrets were sealed)."""
    secret = body.get("secret")
    return secret if isinstance(secret, str) and secret else None


def _unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # Kept as is: it does not open, and the delivery says so.
        return text.encode("utf-8", "replace")
