"""What a notification says and how it is signed.

A message is a JSON object made when the notification is enqueued (it is the
``notify.deliver`` task's ``message``): ``event``, ``rule``, ``subject`` (the run or the
schedule firing it is about) and ``createdAt``. It never holds the rule's secret.

- ``webhook``: the body is the message as JSON.
- ``chat``: the body is ``{"text": <the rule's template with {fields} filled in>}``.

Every body is signed when it is sent: ``X-Longshore-Timestamp`` is the Unix time in seconds
and ``X-Longshore-Signature`` is ``sha256=`` + the hex HMAC-SHA256, keyed with the rule's
secret, of ``<timestamp>.<body>``. A receiver recomputes it, compares in constant time and
refuses timestamps older than a few minutes, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "X-Longshore-Signature"
TIMESTAMP_HEADER = "X-Longshore-Timestamp"
EVENT_HEADER = "X-Longshore-Event"
DELIVERY_HEADER = "X-Longshore-Delivery"
MAX_FIELD_CHARS = 1000
_FIELD = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Longshore-Signature`` value of ``body`` sent at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def template_fields(message: Mapping[str, Any]) -> dict[str, str]:
    """The ``{fields}`` a chat template may use: ``event``, ``rule``, ``subject`` (the job,
    the schedule of a missed firing, or ``rule <name>`` for a test) and every field of the
    message's ``subject``."""
    subject = message.get("subject")
    fields: dict[str, str] = {}
    if isinstance(subject, Mapping):
        for key, value in subject.items():
            fields[str(key)] = "" if value is None else str(value)
    fields["event"] = str(message.get("event", ""))
    fields["rule"] = str(message.get("rule", ""))
    fields["subject"] = fields.get("job") or fields.get("schedule") or ""
    if fields.get("kind") == "test" and not fields["subject"]:  # an operator's test of a rule
        fields["subject"] = f"rule {fields['rule']}"
    return {key: _plain(value) for key, value in fields.items()}


def _plain(text: str) -> str:
    """One line without control characters (untrusted run output must not break a chat
    message's layout), at most :data:`MAX_FIELD_CHARS`."""
    cleaned = "".join(char if char.isprintable() else " " for char in text)
    return cleaned[:MAX_FIELD_CHARS]


def render(template: str, message: Mapping[str, Any]) -> str:
    """``template`` with each ``{field}`` replaced (an unknown field stays as it is)."""
    fields = template_fields(message)
    return _FIELD.sub(lambda match: fields.get(match[1], match[0]), template).strip()


def webhook_body(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()


def chat_body(template: str, message: Mapping[str, Any]) -> bytes:
    return json.dumps({"text": render(template, message)}, separators=(",", ":")).encode()
