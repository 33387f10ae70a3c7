"""The SMTP server of ``email`` notification rules (``WORKER_SMTP_*``): part of
:class:`~service.settings.Settings` (field ``smtp_foo`` is ``WORKER_SMTP_FOO``), documented in
docs/configuration.md and docs/notifications.md. Without ``WORKER_SMTP_URL`` there is no
email channel: the admin API refuses an email rule, and a delivery of one fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings

from service.errors import SettingsError
from service.notifications.mail import Mailer, SmtpServer, parse_smtp_url, read_password
from store.notifications.mailto import address_problem


class SmtpSettings(BaseSettings):
    """Where the mails of ``email`` rules are sent, as whom, and how the server is trusted."""

    smtp_url: str | None = None
    smtp_from: str | None = None
    smtp_username: str | None = None
    smtp_password_file: Path | None = None
    smtp_ca_file: Path | None = None

    @field_validator(
        "smtp_url",
        "smtp_from",
        "smtp_username",
        "smtp_password_file",
        "smtp_ca_file",
        mode="before",
    )
    @classmethod
    def _smtp_empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_smtp_url(value)
        return value

    @field_validator("smtp_from")
    @classmethod
    def _smtp_from(cls, value: str | None) -> str | None:
        if value is not None and (problem := address_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("smtp_username")
    @classmethod
    def _smtp_username(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value) > 256 or any(not char.isprintable() for char in value)
        ):
            raise ValueError("must be at most 256 printable characters")
        return value

    @model_validator(mode="after")
    def _smtp_consistency(self) -> Self:
        if self.smtp_url is None:
            given = [self.smtp_from, self.smtp_username, self.smtp_password_file]
            if any(value is not None for value in given):
                raise ValueError(
                    "WORKER_SMTP_FROM, _USERNAME or _PASSWORD_FILE is set but WORKER_SMTP_URL "
                    "is not: set the SMTP server's URL (or unset them)"
                )
            return self
        if self.smtp_from is None:
            raise ValueError("WORKER_SMTP_URL is set but WORKER_SMTP_FROM (the sender) is not")
        if (self.smtp_username is None) != (self.smtp_password_file is None):
            raise ValueError(
                "WORKER_SMTP_USERNAME and WORKER_SMTP_PASSWORD_FILE must be set together"
            )
        return self

    @property
    def smtp_server(self) -> SmtpServer | None:
        """The configured SMTP server, ``None`` without ``WORKER_SMTP_URL``."""
        if self.smtp_url is None or self.smtp_from is None:
            return None
        scheme, host, port = parse_smtp_url(self.smtp_url)
        return SmtpServer(
            scheme=scheme,
            host=host,
            port=port,
            sender=self.smtp_from,
            username=self.smtp_username,
            password_file=self.smtp_password_file,
            ca_file=self.smtp_ca_file,
        )


def smtp_mailer(settings: SmtpSettings) -> Mailer | None:
    """The mailer of a process that delivers notifications (``None`` without SMTP). Its
    password file and CA file are checked now: a bad one stops the start with a
    :class:`SettingsError` naming the variable (never the password)."""
    server = settings.smtp_server
    if server is None:
        return None
    if server.password_file is not None:
        try:
            read_password(server.password_file)
        except ValueError as exc:
            raise SettingsError(f"WORKER_SMTP_PASSWORD_FILE: {exc}") from None
    try:
        return Mailer(server)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise SettingsError(
            f"WORKER_SMTP_CA_FILE: cannot load {server.ca_file}: {type(exc).__name__}"
        ) from None
