"""Settings from the environment (``WORKER_*``), validated once at start.

Only ``service`` builds settings; every other package receives plain values. A bad value is
a :class:`SettingsError` whose message names the variable, e.g.
``WORKER_CONCURRENCY: must be between 1 and 1024 (got '0')``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from admin.config import Role, parse_roles, parse_tokens
from scheduler.factories import parse_names, parse_presets
from scheduler.spec import parse_spec
from service.addresses import parse_listen_addr
from service.errors import SettingsError
from service.smtp_settings import SmtpSettings
from service.units import (
    duration_seconds,
    parse_pairs,
)
from service.upkeep_settings import UpkeepSettings
from store.queue.models import HANDLER_NAME, QUEUE_NAME
from store.schedules.models import SCHEDULE_NAME

ENV_PREFIX = "WORKER_"

IGNORED_SEED_VARIABLES = (
    "WORKER_CRON_HANDLERS",
    "WORKER_CRON_PRESETS",
    "WORKER_JOB_EVENT_CACHE_TTL",
    "WORKER_JOB_GIT_BIN",
    "WORKER_JOB_DOCKER_BIN",
)
"""Variables of the seed design that Longshore accepts and ignores (logged at start):
in-memory cron (replaced by the ``WORKER_DURABLE_CRON_*`` schedules), an event cache (the
event store indexes per key) and binary paths (git is run from ``PATH``, Docker through its
API socket)."""
SECRET_FIELDS = frozenset({"admin_token", "admin_approval_token", "admin_password"})
"""Fields whose value is never shown, not even in an error message."""
_TLS_VARIABLES = ("WORKER_ADMIN_TLS_CERT", "WORKER_ADMIN_TLS_KEY", "WORKER_ADMIN_TLS_CA")
MIN_TOKEN_CHARS = 24
"""The shortest admin token accepted: a guessable token is an open door to every mutation."""


def check_token_strength(name: str, secret: str) -> None:
    """Refuse a weak admin token, naming the rule (never the secret)."""
    if len(secret) < MIN_TOKEN_CHARS or len(set(secret)) < 8:
        raise ValueError(
            f"the token named {name!r} is too weak: use at least {MIN_TOKEN_CHARS} characters "
            "with at least 8 different ones (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )


class Settings(UpkeepSettings, SmtpSettings):
    """Every setting Longshore reads. Field ``foo_bar`` is ``WORKER_FOO_BAR``; the container
        jobs' ``WORKER_JOB_*`` are declared in :class:`~service.job_settings.JobSettings`, the
    disk's upkeep and infrastructure waits in :class:`~service.upkeep_settings.UpkeepSettings`,
    the email channel's ``WORKER_SMTP_*`` in :class:`~service.smtp_settings.SmtpSettings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="ignore", frozen=True
    )

    # Storage
    database_url: str | None = None
    data_dir: Path = Path("./longshore-data")
    secrets_key_file: Path | None = None

    # Worker
    concurrency: int = Field(default=8, ge=1, le=1024)
    lease_seconds: Annotated[float, NoDecode] = Field(default=30.0, ge=1.0, le=3600.0)
    heartbeat_seconds: Annotated[float | None, NoDecode] = None
    stale_worker_seconds: Annotated[float | None, NoDecode] = None
    poll_interval_seconds: Annotated[float, NoDecode] = Field(default=1.0, gt=0.0, le=60.0)
    shutdown_grace_seconds: Annotated[float, NoDecode] = Field(default=30.0, ge=0.0)
    claim_batch: int = Field(default=32, ge=1, le=1000)
    key_retention_seconds: Annotated[float, NoDecode] = Field(default=7 * 86400.0, ge=0.0)
    queue_concurrency: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)

    # Queue defaults shared with the admin API (seed 003 names)
    admin_default_queue: str = "default"
    admin_queue_weights: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)

    # Container jobs: the fields of ``JobSettings``

    # Event store and audit log
    job_event_dir: Path | None = None
    job_event_durability: Literal["always", "interval", "none"] = "always"
    job_event_max_entries: int = Field(default=10_000, ge=1)
    admin_audit_event_limit: int | None = Field(default=None, ge=1)
    admin_audit_retention: Annotated[float | None, NoDecode] = None
    admin_audit_archive_dir: Path | None = None
    admin_audit_archive_interval: Annotated[float, NoDecode] = Field(default=60.0, gt=0.0)
    admin_audit_export_limit_max: int = Field(default=1_000_000, ge=1)

    # Notifications (docs/notifications.md)
    notify_queue: str | None = None
    notify_attempts: int = Field(default=8, ge=1, le=100)
    notify_retry_seconds: Annotated[float, NoDecode] = Field(default=10.0, ge=0.0, le=3600.0)
    notify_response_max_bytes: int = Field(default=65536, ge=0, le=16 * 1024 * 1024)

    # Admin API: transport and authentication (SPEC §7; docs/security.md)
    admin_http_addr: str = "127.0.0.1:8081"
    admin_tls_cert: Path | None = None
    admin_tls_key: Path | None = None
    admin_tls_ca: Path | None = None
    admin_token: SecretStr | None = None
    admin_roles: Annotated[dict[str, Role], NoDecode] = Field(default_factory=dict)
    admin_default_role: Role = Role.VIEWER
    # The console's sign-in without a client certificate (docs/console.md)
    admin_auth: Literal["bearer", "header", "basic", "none"] = "bearer"
    admin_password: SecretStr | None = None
    admin_token_header: str = Field(
        default="x-longshore-admin-token", pattern=r"^[A-Za-z0-9-]{1,64}$"
    )
    admin_behind_tls_proxy: bool = False
    admin_read_only: bool = False

    # Client commands (`longshore jobs|runs|schedules|audit ...`; docs/cli.md)
    admin_url: str | None = None
    admin_client_cert: Path | None = None
    admin_client_key: Path | None = None
    admin_client_ca: Path | None = None

    # Admin API: guardrails (seed 003 names)
    admin_replay_limit_max: int = Field(default=1000, ge=1)
    admin_replay_ids_max: int = Field(default=1000, ge=1)
    admin_schedule_run_max: int = Field(default=10, ge=1)
    admin_schedule_run_window: Annotated[float, NoDecode] = Field(default=60.0, gt=0.0)
    admin_require_approval: bool = False
    admin_approval_token: SecretStr | None = None

    # Durable schedules
    durable_cron_handlers: Annotated[tuple[str, ...], NoDecode] = ()
    durable_cron_presets: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    scheduler_lag_seconds: Annotated[float | None, NoDecode] = Field(default=None, gt=0.0)

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "lease_seconds",
        "heartbeat_seconds",
        "stale_worker_seconds",
        "poll_interval_seconds",
        "shutdown_grace_seconds",
        "key_retention_seconds",
        "admin_audit_retention",
        "admin_audit_archive_interval",
        "scheduler_lag_seconds",
        "admin_schedule_run_window",
        "run_retention_keep_for",
        "run_retention_interval",
        "infra_retry_seconds",
        "image_retention_interval",
        "notify_retry_seconds",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return duration_seconds(value)

    @field_validator("admin_queue_weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> dict[str, int]:
        weights = parse_pairs(value, "weight")
        for name, weight in weights.items():
            if not 1 <= weight <= 1000:
                raise ValueError(f"weight of {name!r} must be between 1 and 1000")
        return weights

    @field_validator("queue_concurrency", mode="before")
    @classmethod
    def _limits(cls, value: Any) -> dict[str, int]:
        limits = parse_pairs(value, "limit")
        for name, limit in limits.items():
            if limit < 1:
                raise ValueError(f"concurrency limit of {name!r} must be at least 1")
        return limits

    @field_validator("notify_queue")
    @classmethod
    def _optional_queue_name(cls, value: str | None) -> str | None:
        return None if not value else cls._queue_name(value)

    @field_validator("admin_default_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not QUEUE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid queue name")
        return value

    @field_validator("durable_cron_handlers", mode="before")
    @classmethod
    def _cron_handlers(cls, value: Any) -> Any:
        names = parse_names(value) if isinstance(value, str) else list(value)
        for name in names:
            if not isinstance(name, str) or not HANDLER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid handler name")
            if not SCHEDULE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} cannot name a factory")
        return tuple(names)

    @field_validator("durable_cron_presets", mode="before")
    @classmethod
    def _cron_presets(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                presets = parse_presets(value)
            except ValueError as exc:  # InvalidPreset
                raise ValueError(str(exc)) from None
        elif isinstance(value, Mapping):
            presets = {str(k): str(v) for k, v in value.items()}
        else:
            raise ValueError("expected 'name=spec,...'")
        for name, spec in presets.items():
            if not SCHEDULE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid schedule name")
            try:
                parse_spec(spec)
            except ValueError as exc:  # SpecError
                raise ValueError(f"preset {name!r}: {exc}") from None
        return presets

    @field_validator("admin_http_addr")
    @classmethod
    def _listen_addr(cls, value: str) -> str:
        parse_listen_addr(value)
        return value.strip()

    @field_validator(
        "admin_tls_cert",
        "admin_tls_key",
        "admin_tls_ca",
        "admin_token",
        "admin_approval_token",
        "admin_password",
        "admin_url",
        "admin_client_cert",
        "admin_client_key",
        "admin_client_ca",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("admin_token")
    @classmethod
    def _tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            # parse_tokens raises ValueError without the secret in its message.
            for name, secret in parse_tokens(value.get_secret_value()).items():
                check_token_strength(name, secret)
        return value

    @field_validator("admin_roles", mode="before")
    @classmethod
    def _roles(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_roles(value)
        if isinstance(value, Mapping):
            return {
                str(k): v if isinstance(v, Role) else Role.parse(str(v)) for k, v in value.items()
            }
        raise ValueError("expected 'cn=role,...'")

    @field_validator("admin_default_role", mode="before")
    @classmethod
    def _role(cls, value: Any) -> Any:
        return Role.parse(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _admin_consistency(self) -> Settings:
        given = [self.admin_tls_cert, self.admin_tls_key, self.admin_tls_ca]
        if any(path is not None for path in given) and not all(path is not None for path in given):
            missing = [name for name, path in zip(_TLS_VARIABLES, given, strict=True) if not path]
            raise ValueError(
                "WORKER_ADMIN_TLS_CERT, WORKER_ADMIN_TLS_KEY and WORKER_ADMIN_TLS_CA must be "
                f"set together for mTLS (missing: {', '.join(missing)})"
            )
        if self.admin_password is not None and self.admin_auth != "basic":
            raise ValueError("WORKER_ADMIN_PASSWORD is set but WORKER_ADMIN_AUTH is not basic")
        if self.admin_require_approval and self.admin_approval_token is None:
            raise ValueError(
                "WORKER_ADMIN_REQUIRE_APPROVAL is true but WORKER_ADMIN_APPROVAL_TOKEN is not "
                "set: set the approval token (or turn approval off)"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def effective_heartbeat_seconds(self) -> float:
        """Leases are renewed at a third of their length: two renewals can be lost in a row
        before the lease runs out."""
        return self.heartbeat_seconds or self.lease_seconds / 3

    @property
    def job_work_dir(self) -> Path:
        return self.job_workdir or self.data_dir / "work"

    @property
    def secrets_key_path(self) -> Path:
        """``WORKER_SECRETS_KEY_FILE``, by default ``secrets.key`` in the data dir."""
        return self.secrets_key_file or self.data_dir / "secrets.key"

    @property
    def event_dir(self) -> Path:
        return self.job_event_dir or self.data_dir / "events"

    @property
    def admin_listen(self) -> tuple[str, int]:
        """``WORKER_ADMIN_HTTP_ADDR`` as ``(host, port)``."""
        return parse_listen_addr(self.admin_http_addr)

    @property
    def admin_tls(self) -> tuple[Path, Path, Path] | None:
        """``(cert, key, ca)`` when mTLS is configured, else ``None``."""
        cert, key, ca = self.admin_tls_cert, self.admin_tls_key, self.admin_tls_ca
        if cert is None or key is None or ca is None:
            return None
        return cert, key, ca

    @property
    def effective_stale_worker_seconds(self) -> float:
        """A worker is stale after missing several heartbeats and outliving its leases."""
        return self.stale_worker_seconds or max(self.lease_seconds * 2, 10.0)


def ignored_variables(env: Mapping[str, str]) -> list[str]:
    """The seed's variables set in ``env`` that have no effect here (see
    :data:`IGNORED_SEED_VARIABLES`), for a warning at start."""
    present = {key.upper() for key in env}
    return [name for name in IGNORED_SEED_VARIABLES if name in present]


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from the process environment (or ``env``), plus explicit overrides
    (command-line flags). Raises :class:`SettingsError` naming every bad variable."""
    try:
        if env is None:
            return Settings(**overrides)
        lowered = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in env.items()
            if key.upper().startswith(ENV_PREFIX)
        }
        known = {k: v for k, v in lowered.items() if k in Settings.model_fields}
        return Settings.model_validate({**known, **overrides})
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:  # a check across variables names them itself
            problems.append(message)
            continue
        field = str(error["loc"][0])
        value = error.get("input")
        secret = field in SECRET_FIELDS or field == "smtp_url"  # may hold a password
        shown = f" (got {value!r})" if isinstance(value, str | int | float) and not secret else ""
        problems.append(f"{ENV_PREFIX}{field.upper()}: {message}{shown}")
    return "; ".join(problems)
