"""Admin configuration parsing, request-id sanitising, identity and the error table."""

from __future__ import annotations

import uuid

import pytest

from admin.auth import certificate_cn
from admin.config import AdminConfig, Role, parse_roles, parse_tokens
from admin.errors import ApprovalRequired, GuardrailExceeded, NotFound, status_of
from admin.middleware import sanitise_request_id
from store.errors import InvalidTask, StoreUnavailable, TaskNotWaiting


def test_roles_map_certificate_names_to_roles() -> None:
    assert parse_roles("ui=viewer, ops = operator,root=ADMIN,") == {
        "ui": Role.VIEWER,
        "ops": Role.OPERATOR,
        "root": Role.ADMIN,
    }
    assert parse_roles("") == {}
    with pytest.raises(ValueError, match="superuser"):
        parse_roles("ui=superuser")
    with pytest.raises(ValueError, match="cn=role"):
        parse_roles("ui")


def test_unmapped_clients_get_the_default_role() -> None:
    config = AdminConfig(roles={"ui": Role.VIEWER}, default_role=Role.OPERATOR)
    assert config.role_of("ui") is Role.VIEWER
    assert config.role_of("someone") is Role.OPERATOR
    assert AdminConfig().default_role is Role.VIEWER


def test_a_bare_token_is_named_admin_token_and_pairs_name_their_clients() -> None:
    assert parse_tokens("s3cr3t-Value_x") == {"admin-token": "s3cr3t-Value_x"}
    assert parse_tokens("ui:abc, cli:def") == {"ui": "abc", "cli": "def"}
    assert parse_tokens("  ") == {}
    with pytest.raises(ValueError, match="name:secret"):
        parse_tokens("ui:,cli:def")


def test_approval_without_a_token_and_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="approval"):
        AdminConfig(require_approval=True, approval_token="")
    with pytest.raises(ValueError, match="caps"):
        AdminConfig(replay_limit_max=0)


def test_request_ids_are_kept_when_safe_and_replaced_otherwise() -> None:
    given = str(uuid.uuid4())
    assert sanitise_request_id(given) == given
    assert sanitise_request_id("abc.DEF-1_2") == "abc.DEF-1_2"
    braced = "{" + given + "}"
    assert sanitise_request_id(braced) == given
    for bad in ("", None, "a b", "x" * 65, "evil\r\nSet-Cookie: a=b"):
        uuid.UUID(sanitise_request_id(bad))


def test_the_subject_cn_is_read_from_a_peer_certificate() -> None:
    cert = {"subject": ((("organizationName", "Acme"),), (("commonName", "ops-console"),))}
    assert certificate_cn(cert) == "ops-console"
    assert certificate_cn({"subject": ()}) is None
    assert certificate_cn(None) is None


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFound("x"), 404, "not_found"),
        (ApprovalRequired("x"), 403, "approval_required"),
        (GuardrailExceeded("x", code="replay_limit_exceeded"), 429, "replay_limit_exceeded"),
        (InvalidTask("x"), 400, "invalid_request"),
        (TaskNotWaiting("x"), 409, "conflict"),
        (StoreUnavailable("x"), 503, "unavailable"),
        (RuntimeError("x"), 500, "internal_error"),
    ],
)
def test_one_table_maps_errors_to_statuses(error: Exception, status: int, code: str) -> None:
    assert status_of(error) == (status, code)
