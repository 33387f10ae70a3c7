"""The console's Settings page: the effective settings, never a secret."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from admin.config import Role
from service.api_listener import mask_url, prepare_admin_api, settings_view
from service.errors import SettingsError
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


def test_the_settings_page_shows_the_smtp_password_file_never_the_password(
    tmp_path: Path,
) -> None:
    password = "smtp-pa55word-0123456789"
    password_file = tmp_path / "smtp-password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    env = {
        "WORKER_SMTP_URL": "smtp+starttls://mail.example.com",
        "WORKER_SMTP_FROM": "longshore@example.com",
        "WORKER_SMTP_USERNAME": "longshore",
        "WORKER_SMTP_PASSWORD_FILE": str(password_file),
    }
    shown = settings_view(load_settings(env, data_dir=tmp_path))
    assert shown["WORKER_SMTP_URL"] == "smtp+starttls://mail.example.com"
    assert shown["WORKER_SMTP_PASSWORD_FILE"] == str(password_file)
    assert password not in "\n".join(shown.values())
    with pytest.raises(SettingsError, match="WORKER_SMTP_URL") as caught:
        load_settings({**env, "WORKER_SMTP_URL": f"smtps://u:{password}@mail.example.com"})
    assert password not in str(caught.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_sign_in_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="WORKER_ADMIN_AUTH"):
        load_settings({"WORKER_ADMIN_AUTH": "kerberos"}, data_dir=tmp_path)
    with pytest.raises(SettingsError, match="WORKER_ADMIN_PASSWORD is set but"):
        load_settings({"WORKER_ADMIN_PASSWORD": "x" * 30}, data_dir=tmp_path)
    with pytest.raises(SettingsError, match="WORKER_ADMIN_TOKEN_HEADER"):
        load_settings({"WORKER_ADMIN_TOKEN_HEADER": "bad header"}, data_dir=tmp_path)
    settings = load_settings({"WORKER_ADMIN_READ_ONLY": "true"}, data_dir=tmp_path)
    assert settings.admin_read_only is True


def test_a_non_loopback_listener_without_mtls_needs_a_tls_proxy_and_a_sign_in(
    tmp_path: Path,
) -> None:
    env = {"WORKER_ADMIN_HTTP_ADDR": f"0.0.0.0:{free_port()}"}
    with pytest.raises(SettingsError, match="WORKER_ADMIN_BEHIND_TLS_PROXY"):
        prepare_admin_api(load_settings(env, data_dir=tmp_path))
    proxied = {**env, "WORKER_ADMIN_BEHIND_TLS_PROXY": "true"}
    with pytest.raises(SettingsError, match="WORKER_ADMIN_AUTH=none is loopback only"):
        prepare_admin_api(
            load_settings({**proxied, "WORKER_ADMIN_AUTH": "none"}, data_dir=tmp_path)
        )
    plan = prepare_admin_api(load_settings(proxied, data_dir=tmp_path))
    try:
        assert plan.config.secure_cookies is True
        assert "behind a TLS proxy" in plan.describe()
    finally:
        plan.close()


def test_basic_mode_generates_a_password_once_and_keeps_it(tmp_path: Path) -> None:
    env = {"WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{free_port()}", "WORKER_ADMIN_AUTH": "basic"}
    first = prepare_admin_api(load_settings(env, data_dir=tmp_path))
    first.close()
    assert first.new_password is not None
    assert first.config.basic_password == first.new_password
    assert first.config.role_of("admin") == Role.ADMIN
    stored = tmp_path / "admin-password"
    assert stored.stat().st_mode & 0o777 == 0o600
    again = prepare_admin_api(load_settings(env, data_dir=tmp_path))
    again.close()
    assert again.new_password is None
    assert again.config.basic_password == first.new_password
    assert first.new_password not in again.describe()
