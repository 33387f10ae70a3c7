"""``POST /notifications/rules/{name}/test``: send a rule a test notification
(docs/notifications.md, "Testing a rule").

One ``notify.deliver`` task of a ``test`` message is enqueued for the rule by the same code
that enqueues real notifications, so it is delivered (signed, retried, dead-lettered, counted
in the metrics and events) like one; 202 with its ``taskId`` (``GET /tasks/{taskId}`` tells
how the delivery went). A disabled rule may be tested (before it is enabled); an unknown one
is 404; an ``email`` rule while no SMTP server is configured is 400, as saving one is. Needs
``admin``; audited as ``notification.test`` (not risky: it changes nothing). Mounted when the
app is given what sends them (``AdminServices.notification_tests``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from admin.config import Role
from admin.deps import ConfigDep, NotificationsDep, NotificationTestsDep
from admin.errors import InvalidRequest
from admin.mutations import Mutation, mutation
from admin.routes.notifications import NO_SMTP, not_found
from admin.schemas import ErrorBody
from admin.schemas_notifications import RuleTestSent
from store.notifications.models import RULE_NAME, Channel

router = APIRouter(prefix="/notifications", tags=["notifications"])

TestRule = Annotated[Mutation, Depends(mutation("notification.test", Role.ADMIN, target="name"))]


@router.post(
    "/rules/{name}/test",
    response_model=RuleTestSent,
    status_code=202,
    responses={400: {"model": ErrorBody, "description": "An email rule without SMTP"}},
)
async def test_rule(
    name: str,
    audit: TestRule,
    rules: NotificationsDep,
    tests: NotificationTestsDep,
    config: ConfigDep,
) -> RuleTestSent:
    """Send the rule ``name`` (enabled or not) a ``test`` notification through the queue."""
    found = await rules.get(name) if RULE_NAME.fullmatch(name) else None
    if found is None:
        raise not_found(name)
    if found.channel is Channel.EMAIL and not config.smtp_configured:
        raise InvalidRequest(NO_SMTP)
    task_id = await tests.send_test(found)
    await audit.ok(f"taskId={task_id} channel={found.channel.value} enabled={found.enabled}")
    return RuleTestSent(task_id=str(task_id), rule=name)
