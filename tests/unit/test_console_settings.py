"""The console's Settings page: the effective settings, never a secret."""

from __future__ import annotations

from pathlib import Path

from service.api_listener import mask_url, settings_view
from service.settings import load_settings


def test_the_settings_page_never_shows_a_secret(tmp_path: Path) -> None:
    secret = "s3cret-token-value-0123456789abcdef"
    settings = load_settings(
        {},
        data_dir=tmp_path,
        admin_token=secret,
        admin_auth="basic",
        admin_password="p4ssword-value-0123456789",
        database_url="postgresql://app:hunter2@db.example:5432/longshore",
    )
    shown = settings_view(settings)
    assert shown["WORKER_ADMIN_TOKEN"] == "(set, hidden)"
    assert shown["WORKER_ADMIN_PASSWORD"] == "(set, hidden)"
    assert shown["WORKER_ADMIN_APPROVAL_TOKEN"] == "(not set)"
    assert shown["WORKER_DATABASE_URL"] == "postgresql://app:***@db.example:5432/longshore"
    joined = "\n".join(shown.values())
    for leaked in (secret, "p4ssword", "hunter2"):
        assert leaked not in joined
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
