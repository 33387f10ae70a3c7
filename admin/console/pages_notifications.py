"""Console pages: notification rules (docs/notifications.md): the list, and the form that
creates or edits one. Saving and deleting are API calls (``PUT`` / ``DELETE
/admin/v1/notifications/rules/{name}``); a rule's secret is never shown, only whether it is
set, and the form's secret field is write-only (left empty, the stored one is kept)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from admin.auth import RequireViewer
from admin.console.pages import _need, services_of
from admin.console.render import render
from admin.errors import NotFound
from admin.schemas_notifications import RuleBody
from store.notifications.models import DEFAULT_TEMPLATE, RULE_NAME, Channel, RuleEvent, RuleScope

router = APIRouter(include_in_schema=False)


def _choices() -> dict[str, Any]:
    return {
        "scopes": [scope.value for scope in RuleScope],
        "events": [event.value for event in RuleEvent],
        "channels": [channel.value for channel in Channel],
    }


@router.get("/notifications", response_class=HTMLResponse)
async def rules(request: Request, identity: RequireViewer) -> HTMLResponse:
    store = _need(services_of(request).notifications, "notification rules")
    shown = [RuleBody.of(rule) for rule in await store.list_all()]
    return render(
        request,
        "notifications.html",
        identity,
        title="Notifications",
        active="notifications",
        rules=shown,
    )


@router.get("/notifications/new", response_class=HTMLResponse)
async def new_rule(request: Request, identity: RequireViewer) -> HTMLResponse:
    return render(
        request,
        "notification_form.html",
        identity,
        title="New notification rule",
        active="notifications",
        rule=None,
        default_template=DEFAULT_TEMPLATE,
        **_choices(),
    )


@router.get("/notifications/{name}/edit", response_class=HTMLResponse)
async def edit_rule(name: str, request: Request, identity: RequireViewer) -> HTMLResponse:
    store = _need(services_of(request).notifications, "notification rules")
    found = await store.get(name) if RULE_NAME.fullmatch(name) else None
    if found is None:
        raise NotFound(f"notification rule {name!r} not found")
    return render(
        request,
        "notification_form.html",
        identity,
        title=f"Edit notification rule {name}",
        active="notifications",
        rule=RuleBody.of(found),
        default_template=DEFAULT_TEMPLATE,
        **_choices(),
    )
