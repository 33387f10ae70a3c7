"""Request and response bodies of secrets, of a job's secret grants and typed parameters,
and of a manual run's parameter overrides (camelCase)."""

from __future__ import annotations

import base64
import binascii

from pydantic import Field

from admin.errors import InvalidRequest
from admin.schemas import Schema, epoch_ms, rfc3339
from store.jobs.models import ParamSpec, ParamType, SecretGrant
from store.secrets.protocol import SecretInfo

ParamValueBody = bool | int | str
"""A parameter value: JSON ``true``/``false``, an integer or a string (each kept as sent)."""


class SecretGrantBody(Schema):
    """A secret a job gets: ``{name, env}`` (an environment variable) or ``{name, file}``
    (the file ``/run/secrets/<file>``, mode 0400: preferred, see docs/security.md)."""

    name: str
    env: str | None = None
    file: str | None = None

    def grant(self) -> SecretGrant:
        return SecretGrant(name=self.name, env=self.env or None, file=self.file or None)

    @classmethod
    def of(cls, grant: SecretGrant) -> SecretGrantBody:
        return cls(name=grant.name, env=grant.env, file=grant.file)


class ParamBody(Schema):
    """A parameter a job declares (see docs/jobs.md, *Parameters*)."""

    name: str
    type: str = ParamType.STRING.value
    required: bool = False
    default: ParamValueBody | None = None
    pattern: str | None = None
    choices: list[str] = Field(default_factory=list)
    overridable: bool = False
    description: str = ""

    def spec(self) -> ParamSpec:
        # ``type`` stays a plain string: the job runner's rules name it in a 400.
        return ParamSpec(
            name=self.name,
            type=self.type,  # type: ignore[arg-type]
            required=self.required,
            default=self.default,
            pattern=self.pattern or None,
            choices=tuple(self.choices),
            overridable=self.overridable,
            description=self.description,
        )

    @classmethod
    def of(cls, spec: ParamSpec) -> ParamBody:
        return cls(
            name=spec.name,
            type=ParamType(spec.type).value,
            required=spec.required,
            default=spec.default,
            pattern=spec.pattern,
            choices=list(spec.choices),
            overridable=spec.overridable,
            description=spec.description,
        )


class RunRequest(Schema):
    """``POST /jobs/{name}/run``'s optional body: values of the job's ``overridable``
    parameters."""

    params: dict[str, ParamValueBody] = Field(default_factory=dict)


class SecretRequest(Schema):
    """``PUT /secrets/{name}``: the value as text (``value``) or as base64 (``valueBase64``,
    for bytes that are not UTF-8), exactly one of them. Never shown again by any route."""

    value: str | None = Field(default=None, repr=False)
    value_base64: str | None = Field(default=None, repr=False)

    def bytes_value(self) -> bytes:
        if (self.value is None) == (self.value_base64 is None):
            raise InvalidRequest("send exactly one of value and valueBase64")
        if self.value is not None:
            return self.value.encode("utf-8")
        try:
            return base64.b64decode(self.value_base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("valueBase64: is not base64") from None


class SecretBody(Schema):
    """What is shown of a secret: never its value."""

    name: str
    size_bytes: int
    created_at: str | None
    created_at_ms: int | None
    updated_at: str | None
    updated_at_ms: int | None

    @classmethod
    def of(cls, info: SecretInfo) -> SecretBody:
        return cls(
            name=info.name,
            size_bytes=info.size_bytes,
            created_at=rfc3339(info.created_at),
            created_at_ms=epoch_ms(info.created_at),
            updated_at=rfc3339(info.updated_at),
            updated_at_ms=epoch_ms(info.updated_at),
        )


class SecretOne(Schema):
    secret: SecretBody


class SecretList(Schema):
    secrets: list[SecretBody]


class SecretDeleted(Schema):
    deleted: bool
    name: str
