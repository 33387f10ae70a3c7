"""The ``notify.deliver`` handler: one POST of one notification to its rule's URL.

The task carries the rule's name and the message (never the secret: the rule is read when
the task runs, so a rotated secret signs deliveries still waiting). The rule's secret is
stored sealed with the secrets key (``WORKER_SECRETS_KEY_FILE``); it is opened here, and only
here, to sign the body, and never logged or recorded. A secret that does not open (the key
file holds another key, or the stored bytes were altered) dead-letters the task at once with
a ``NotificationDeadLettered`` event saying so: nothing is sent unsigned. The request:

- goes to the URL the operator configured (operator-trusted: any http(s) address,
  loopback and private ones included), with ``trust_env=False`` (no proxy variables);
- never follows a redirect (a 3xx is a failure), reads at most
  ``WORKER_NOTIFY_RESPONSE_MAX_BYTES`` of the response, gives up after the rule's
  ``timeoutSeconds``;
- is signed (:mod:`.messages`): ``X-Longshore-Timestamp`` and ``X-Longshore-Signature``.

An ``email`` rule's notification is a mail sent through the operator's SMTP server instead
(:mod:`.mail`); without one configured (``WORKER_SMTP_URL``) its delivery fails, saying so.

A 2xx answer (for a mail: the server's acceptance) delivers it. Anything else raises
:class:`~service.errors.DeliveryFailed`, and the queue retries the task with backoff until its
attempts are used up, then dead-letters it.
Each outcome is an event (``NotificationDelivered``, ``NotificationFailed``,
``NotificationDeadLettered``) on the stream of what it is about (the job's run events, or the
schedule's events for a missed firing), counted in ``longshore_notifications_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from service.errors import DeliveryFailed, RuleGone, RuleSecretUnusable
from service.notifications import messages
from service.notifications.mail import Mailer
from store.events.models import EventType, NewEvent, Stream
from store.events.protocol import EventStore
from store.notifications.models import Channel, NotificationRule, secret_context
from store.notifications.protocol import NotificationStore
from store.queue.handlers import TaskContext
from store.secrets.crypto import SecretBox
from store.secrets.errors import SecretKeyError

__all__ = ["DEAD_LETTERED", "DELIVERED", "FAILED", "Deliverer"]

logger = logging.getLogger(__name__)

DELIVERED = EventType.NOTIFICATION_DELIVERED.value
FAILED = EventType.NOTIFICATION_FAILED.value
DEAD_LETTERED = EventType.NOTIFICATION_DEAD_LETTERED.value
EVENT_TIMEOUT_SECONDS = 5.0
USER_AGENT = "Longshore-Notifier/1"


class Deliverer:
    """The ``notify.deliver`` handler (:meth:`handle`); see the module docstring."""

    def __init__(
        self,
        *,
        rules: NotificationStore,
        box: SecretBox,
        events: EventStore | None,
        response_max_bytes: int = 65536,
        mailer: Mailer | None = None,
    ) -> None:
        self._rules = rules
        self._box = box
        self._events = events
        self._response_max_bytes = response_max_bytes
        self._mailer = mailer

    async def handle(self, context: TaskContext) -> None:
        task = context.task
        payload = task.payload
        message = payload.get("message")
        if not isinstance(message, Mapping):
            raise RuleGone("notify.deliver: the task carries no message")
        rule_name = str(payload.get("rule", ""))
        rule = await self._rules.get(rule_name)
        last = task.retry.next_run_at(attempts=task.attempts, now=datetime.now(UTC)) is None
        if rule is None:
            await self._record(DEAD_LETTERED, message, task.id, task.attempts, error="rule gone")
            raise RuleGone(f"notification rule {rule_name!r} no longer exists")
        try:
            secret = await self._secret(rule)
        except RuleSecretUnusable as exc:
            await self._record(
                DEAD_LETTERED, message, task.id, task.attempts, error=str(exc), rule=rule
            )
            raise
        try:
            if rule.channel is Channel.EMAIL:
                status = await self._mail(rule, message, task.id)
            else:
                status = await self._post(rule, message, task.id, secret)
        except DeliveryFailed as exc:
            kind = DEAD_LETTERED if last else FAILED
            await self._record(kind, message, task.id, task.attempts, error=str(exc), rule=rule)
            raise
        await self._record(DELIVERED, message, task.id, task.attempts, status=status, rule=rule)

    async def _secret(self, rule: NotificationRule) -> str | None:
        """The rule's secret in clear (``None`` when it has none), opened with the key."""
        if rule.sealed_secret is None:
            return None
        sealed = rule.sealed_secret
        try:
            await asyncio.to_thread(self._box.load)  # no-op once the key is read
        except SecretKeyError as exc:  # the key file itself is unusable; its message says why
            raise RuleSecretUnusable(f"notification rule {rule.name!r}: {exc}") from None
        try:
            return self._box.open(secret_context(rule.name), sealed).decode("utf-8")
        except (SecretKeyError, UnicodeDecodeError):
            raise RuleSecretUnusable(
                f"the secret of notification rule {rule.name!r} does not decrypt with the "
                "secrets key (WORKER_SECRETS_KEY_FILE holds another key?): restore the key "
                "or set the rule's secret again"
            ) from None

    async def _mail(
        self, rule: NotificationRule, message: Mapping[str, Any], task_id: int
    ) -> int | None:
        if self._mailer is None:
            raise DeliveryFailed(
                "email rule, but no SMTP server is configured (WORKER_SMTP_URL is not set)"
            )
        await self._mailer.send(rule, message, task_id=task_id)
        return None

    async def _post(
        self, rule: NotificationRule, message: Mapping[str, Any], task_id: int, secret: str | None
    ) -> int:
        if rule.channel is Channel.CHAT:
            body = messages.chat_body(rule.template, message)
        else:
            body = messages.webhook_body(message)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            messages.EVENT_HEADER: str(message.get("event", "")),
            messages.DELIVERY_HEADER: str(task_id),
        }
        if secret:
            stamp = int(time.time())
            headers[messages.TIMESTAMP_HEADER] = str(stamp)
            headers[messages.SIGNATURE_HEADER] = messages.signature(secret, stamp, body)
        client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=httpx.Timeout(rule.timeout_seconds)
        )
        try:
            # One deadline for the whole exchange (httpx's own timeouts are per operation).
            async with (
                asyncio.timeout(rule.timeout_seconds),
                client,
                client.stream("POST", rule.url, content=body, headers=headers) as response,
            ):
                await self._drain(response)
                status = response.status_code
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, OSError, ValueError) as exc:
            raise DeliveryFailed(f"{_host(rule.url)}: {type(exc).__name__}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"{_host(rule.url)} answered HTTP {status}")
        return status

    async def _drain(self, response: httpx.Response) -> None:
        """Read at most the cap of the response, then stop (the rest is never read)."""
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= self._response_max_bytes:
                return

    async def _record(
        self,
        kind: str,
        message: Mapping[str, Any],
        task_id: int,
        attempt: int,
        *,
        rule: NotificationRule | None = None,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        subject = message.get("subject")
        subject = subject if isinstance(subject, Mapping) else {}
        data: dict[str, Any] = {
            "rule": str(message.get("rule", "")),
            "event": str(message.get("event", "")),
            "taskId": task_id,
            "attempt": attempt,
            "host": "" if rule is None else self._where(rule),
            "channel": "" if rule is None else rule.channel.value,
            "httpStatus": status,
            "error": error,
        }
        logger.info("notification " + kind.removeprefix("Notification").lower(), extra=data)
        if self._events is None:
            return
        run_id = subject.get("runId")
        if subject.get("kind") == "run":
            event = NewEvent(
                stream=Stream.RUNS,
                key=str(subject.get("job", "")),
                type=kind,
                run_id=run_id if isinstance(run_id, str) else None,
                data={**data, "runId": run_id},
            )
        else:
            event = NewEvent(
                stream=Stream.SCHEDULES, key=str(subject.get("schedule", "")), type=kind, data=data
            )
        try:
            await asyncio.wait_for(self._events.append(event), EVENT_TIMEOUT_SECONDS)
        except Exception as exc:
            logger.warning("could not append a notification event", extra={"error": str(exc)})

    def _where(self, rule: NotificationRule) -> str:
        """Where a rule's notifications go: the URL's host, or the SMTP server of a mail."""
        if rule.channel is not Channel.EMAIL:
            return _host(rule.url)
        return "" if self._mailer is None else self._mailer.server.where


def _host(url: str) -> str:
    """The URL's host (and port): never its path or query, which may hold a token."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2]
