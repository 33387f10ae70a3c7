"""Request and response bodies of the notification rule routes (camelCase on the wire).

The rule's ``secret`` is write-only: a request may set it, no response carries it (only
``secretSet``). A request without ``secret`` keeps the stored one.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from admin.schemas import Schema
from store.notifications.models import (
    DEFAULT_TEMPLATE,
    MAX_SECRET,
    MAX_TEMPLATE,
    MAX_URL,
    Channel,
    NotificationRule,
    RuleEvent,
    RuleScope,
)


class RuleRequest(Schema):
    """A rule to save under the name in the path."""

    scope: RuleScope
    target: Annotated[str, Field(max_length=128)] = ""
    """The job (``scope: job``) or schedule (``scope: schedule``); ``""`` for ``global``."""
    events: Annotated[list[RuleEvent], Field(min_length=1, max_length=len(RuleEvent))]
    channel: Channel
    """``webhook``, ``chat`` or ``email`` (needs the operator's ``WORKER_SMTP_URL``)."""
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL)]
    """The receiver's http(s) URL; for ``email``, ``mailto:`` 1-20 comma-separated
    addresses (no ``?`` query)."""
    secret: Annotated[str | None, Field(min_length=1, max_length=MAX_SECRET)] = None
    """The HMAC key of the signature (write-only; required for a webhook's first save; an
    email rule has none)."""
    template: Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE)] = DEFAULT_TEMPLATE
    """The chat message or the mail's text, with ``{event}``, ``{job}``, ``{schedule}``,
    ``{status}``, ``{error}``, ... filled in."""
    failures_in_a_row: Annotated[int, Field(ge=1, le=100)] = 3
    warn_after_seconds: Annotated[int, Field(ge=0, le=7 * 86400)] = 0
    timeout_seconds: Annotated[float, Field(ge=0.1, le=60.0)] = 10.0
    enabled: bool = True

    def rule(self, name: str) -> NotificationRule:
        return NotificationRule(
            name=name,
            scope=self.scope,
            target=self.target,
            events=tuple(self.events),
            channel=self.channel,
            url=self.url,
            secret=self.secret,
            template=self.template,
            failures_in_a_row=self.failures_in_a_row,
            warn_after_seconds=self.warn_after_seconds,
            timeout_seconds=self.timeout_seconds,
            enabled=self.enabled,
        )


class RuleBody(Schema):
    """A rule as shown: never its secret."""

    name: str
    scope: str
    target: str
    events: list[str]
    channel: str
    url: str
    secret_set: bool
    template: str
    failures_in_a_row: int
    warn_after_seconds: int
    timeout_seconds: float
    enabled: bool
    created_at_ms: int
    updated_at_ms: int

    @classmethod
    def of(cls, rule: NotificationRule) -> RuleBody:
        shown: dict[str, Any] = rule.public()
        return cls.model_validate(shown)


class RuleOne(Schema):
    rule: RuleBody


class RuleList(Schema):
    rules: list[RuleBody]


class RuleDeleted(Schema):
    deleted: bool


class RuleTestSent(Schema):
    """A test notification enqueued: its ``notify.deliver`` task (``GET /tasks/{taskId}``
    tells how its delivery went)."""

    task_id: str
    rule: str
