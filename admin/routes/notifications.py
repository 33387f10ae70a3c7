"""Notification rules: list, show, save (create or replace) and delete
(docs/notifications.md).

- ``PUT /notifications/rules/{name}`` saves the rule: 201 when created, 200 when replaced.
  A body without ``secret`` keeps the stored one; a rule that breaks a rule is 400 naming
  the field (``url: must be an http:// or https:// URL with a host``). An enabled ``email``
  rule is refused (400) while no SMTP server is configured (``WORKER_SMTP_URL``).
- ``POST /notifications/rules/{name}/test``: :mod:`admin.routes.notification_tests`.
- Reading needs ``viewer``; saving, deleting and testing need ``admin`` and are audited
  (``notification.save``, ``notification.delete``, ``notification.test``). No response
  carries a secret.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from admin.auth import RequireViewer
from admin.config import Role
from admin.deps import ConfigDep, NotificationsDep
from admin.errors import InvalidRequest, NotFound
from admin.mutations import Mutation, mutation
from admin.schemas import ErrorBody
from admin.schemas_notifications import (
    RuleBody,
    RuleDeleted,
    RuleList,
    RuleOne,
    RuleRequest,
)
from store.notifications.errors import InvalidRule
from store.notifications.models import RULE_NAME, Channel

router = APIRouter(prefix="/notifications", tags=["notifications"])

SaveRule = Annotated[
    Mutation, Depends(mutation("notification.save", Role.ADMIN, target="name", risky=True))
]
DeleteRule = Annotated[
    Mutation, Depends(mutation("notification.delete", Role.ADMIN, target="name", risky=True))
]
NO_SMTP = (
    "channel: email needs an SMTP server, and none is configured (set WORKER_SMTP_URL "
    "and WORKER_SMTP_FROM)"
)
SAVED: dict[int | str, dict[str, Any]] = {
    201: {"model": RuleOne, "description": "Created"},
    400: {"model": ErrorBody, "description": "The rule breaks a rule; the message names it"},
}


def not_found(name: str) -> NotFound:
    return NotFound(f"notification rule {name!r} not found")


@router.get("/rules", response_model=RuleList)
async def list_rules(_: RequireViewer, rules: NotificationsDep) -> RuleList:
    """Every notification rule, by name (secrets are never shown)."""
    return RuleList(rules=[RuleBody.of(rule) for rule in await rules.list_all()])


@router.get("/rules/{name}", response_model=RuleOne)
async def get_rule(name: str, _: RequireViewer, rules: NotificationsDep) -> RuleOne:
    found = await rules.get(name) if RULE_NAME.fullmatch(name) else None
    if found is None:
        raise not_found(name)
    return RuleOne(rule=RuleBody.of(found))


@router.put("/rules/{name}", response_model=RuleOne, responses=SAVED)
async def save_rule(
    name: str,
    body: RuleRequest,
    audit: SaveRule,
    rules: NotificationsDep,
    config: ConfigDep,
    response: Response,
) -> RuleOne:
    """Create (201) or replace (200) the rule ``name``."""
    if not RULE_NAME.fullmatch(name):
        raise InvalidRequest("name: must be 1-128 letters, digits, '.', '_' or '-'")
    if body.channel is Channel.EMAIL and body.enabled and not config.smtp_configured:
        raise InvalidRequest(NO_SMTP)
    try:
        saved, created = await rules.upsert(body.rule(name))
    except InvalidRule as exc:
        raise InvalidRequest(str(exc)) from None
    events = ",".join(event.value for event in saved.events)
    await audit.ok(
        f"{'created' if created else 'updated'} scope={saved.scope.value} "
        f"target={saved.target or '*'} events={events} channel={saved.channel.value}"
    )
    if created:
        response.status_code = 201
    return RuleOne(rule=RuleBody.of(saved))


@router.delete("/rules/{name}", response_model=RuleDeleted)
async def delete_rule(name: str, audit: DeleteRule, rules: NotificationsDep) -> RuleDeleted:
    if not RULE_NAME.fullmatch(name) or not await rules.delete(name):
        raise not_found(name)
    await audit.ok("deleted")
    return RuleDeleted(deleted=True)
