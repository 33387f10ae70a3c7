"""Typed job parameters and secret grants: the rules of their declarations, and the values
a run gets.

A job declares ``params`` (:class:`~store.jobs.models.ParamSpec`): ``string`` (optionally a
``pattern`` the whole value must match), ``integer``, ``boolean`` or ``enum`` (one of
``choices``); ``required`` and ``default``; ``overridable`` lets a manual run set it.
:func:`resolve` gives a run its values: schedule values may set any declared parameter,
manual overrides only overridable ones; then defaults fill the rest, and a required
parameter left without a value is refused. Every refusal is an
:class:`~jobrunner.errors.InvalidParameter` naming the parameter (a 400 at the API).

A run's values reach its container as ``LONGSHORE_PARAM_<NAME>`` (the name upper-cased)
and as the JSON object ``/run/params.json``
(:func:`param_environment`, :func:`params_file`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Final

from jobrunner.errors import InvalidDefinition, InvalidParameter
from store.jobs.models import ParamSpec, ParamType, ParamValue, SecretGrant

__all__ = [
    "check_grants",
    "check_specs",
    "param_environment",
    "params_file",
    "resolve",
]

PARAM_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
SECRET_FILE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_PARAMS: Final = 64
MAX_GRANTS: Final = 64
MAX_CHOICES: Final = 256
MAX_STRING: Final = 4096
MAX_PATTERN: Final = 512
ENV_PREFIX: Final = "LONGSHORE_PARAM_"


def check_specs(specs: Sequence[ParamSpec]) -> tuple[ParamSpec, ...]:
    """The declarations, checked: unique valid names, patterns that compile, enum choices,
    defaults of the declared type. Raises :class:`InvalidDefinition` naming the field."""
    if len(specs) > MAX_PARAMS:
        raise InvalidDefinition("params", f"at most {MAX_PARAMS} parameters")
    seen: set[str] = set()
    out: list[ParamSpec] = []
    for index, spec in enumerate(specs):
        field = f"params[{index}]"
        if not isinstance(spec.name, str) or not PARAM_NAME.fullmatch(spec.name):
            raise InvalidDefinition(
                f"{field}.name", "must be 1-63 letters, digits and '_', not starting with a digit"
            )
        if spec.name.upper() in seen:
            raise InvalidDefinition(f"{field}.name", f"{spec.name} is declared twice")
        seen.add(spec.name.upper())
        try:
            kind = ParamType(spec.type)
        except ValueError:
            raise InvalidDefinition(
                f"{field}.type", "must be one of string, integer, boolean, enum"
            ) from None
        if spec.pattern is not None:
            if kind is not ParamType.STRING:
                raise InvalidDefinition(f"{field}.pattern", "only a string parameter has one")
            if len(spec.pattern) > MAX_PATTERN:
                raise InvalidDefinition(f"{field}.pattern", f"at most {MAX_PATTERN} characters")
            try:
                re.compile(spec.pattern)
            except re.error as exc:
                message = f"is not a regular expression: {exc}"
                raise InvalidDefinition(f"{field}.pattern", message) from None
        if kind is ParamType.ENUM:
            if not spec.choices or len(spec.choices) > MAX_CHOICES:
                raise InvalidDefinition(f"{field}.choices", f"an enum needs 1-{MAX_CHOICES}")
            if not all(isinstance(c, str) and 0 < len(c) <= MAX_STRING for c in spec.choices):
                raise InvalidDefinition(f"{field}.choices", "must be non-empty strings")
        elif spec.choices:
            raise InvalidDefinition(f"{field}.choices", "only an enum parameter has them")
        if len(spec.description) > MAX_STRING:
            raise InvalidDefinition(f"{field}.description", f"at most {MAX_STRING} characters")
        checked = ParamSpec(
            name=spec.name,
            type=kind,
            required=bool(spec.required),
            default=None,
            pattern=spec.pattern,
            choices=tuple(spec.choices),
            overridable=bool(spec.overridable),
            description=spec.description,
        )
        if spec.default is not None:
            try:
                default = _typed(checked, spec.default)
            except InvalidParameter as exc:
                raise InvalidDefinition(f"{field}.default", str(exc).partition(": ")[2]) from None
            checked = dataclasses.replace(checked, default=default)
        out.append(checked)
    return tuple(out)


def check_grants(grants: Sequence[SecretGrant]) -> tuple[SecretGrant, ...]:
    """The secret grants, checked: each names a secret and exactly one of ``env`` (a
    variable name) or ``file`` (a plain file name under ``/run/secrets/``), no variable or
    file given twice. Whether the secrets exist is the caller's to check."""
    if len(grants) > MAX_GRANTS:
        raise InvalidDefinition("secrets", f"at most {MAX_GRANTS} secrets")
    targets: set[str] = set()
    for index, grant in enumerate(grants):
        field = f"secrets[{index}]"
        if not isinstance(grant.name, str) or not grant.name:
            raise InvalidDefinition(f"{field}.name", "must name a secret")
        if (grant.env is None) == (grant.file is None):
            raise InvalidDefinition(field, "must have exactly one of env and file")
        if grant.env is not None:
            if not ENV_NAME.fullmatch(grant.env) or grant.env.startswith(ENV_PREFIX):
                raise InvalidDefinition(
                    f"{field}.env",
                    f"must be letters, digits and '_', not starting with a digit or {ENV_PREFIX}",
                )
            target = f"env:{grant.env}"
        else:
            assert grant.file is not None
            if not SECRET_FILE.fullmatch(grant.file) or grant.file in (".", ".."):
                raise InvalidDefinition(
                    f"{field}.file", "must be a file name (letters, digits, '.', '_', '-')"
                )
            target = f"file:{grant.file}"
        if target in targets:
            raise InvalidDefinition(field, f"{target.partition(':')[2]} is given twice")
        targets.add(target)
    return tuple(grants)


def resolve(
    specs: Sequence[ParamSpec],
    *,
    scheduled: Mapping[str, object] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> dict[str, ParamValue]:
    """The values of a run: ``scheduled`` (a schedule's values: any declared parameter),
    then ``overrides`` (a manual run's: overridable parameters only), then defaults.
    Raises :class:`InvalidParameter` for an undeclared parameter, a value of the wrong
    type or outside its rules, an override of a parameter that is not overridable, and a
    required parameter without a value."""
    by_name = {spec.name: spec for spec in specs}
    values: dict[str, ParamValue] = {}
    for given, manual in ((scheduled or {}, False), (overrides or {}, True)):
        if not isinstance(given, Mapping):
            raise InvalidParameter("*", "must be a JSON object of parameter values")
        for name, value in given.items():
            spec = by_name.get(name)
            if spec is None:
                raise InvalidParameter(str(name)[:80], "the job declares no such parameter")
            if manual and not spec.overridable:
                raise InvalidParameter(name, "is not overridable by a manual run")
            values[name] = _typed(spec, value)
    for spec in specs:
        if spec.name not in values:
            if spec.default is not None:
                values[spec.name] = spec.default
            elif spec.required:
                raise InvalidParameter(spec.name, "is required and has no value")
    return values


def _typed(spec: ParamSpec, value: object) -> ParamValue:
    """``value`` as ``spec``'s type; strings are accepted for integers and booleans (a
    command line gives only strings)."""
    name = spec.name
    kind = ParamType(spec.type)
    if kind is ParamType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InvalidParameter(name, f"must be a boolean, got {_shown(value)}")
    if kind is ParamType.INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
            number = int(value)
        else:
            raise InvalidParameter(name, f"must be an integer, got {_shown(value)}")
        if abs(number) >= 2**63:
            raise InvalidParameter(name, "is out of range")
        return number
    if not isinstance(value, str):
        raise InvalidParameter(name, f"must be a string, got {_shown(value)}")
    if len(value) > MAX_STRING or "\0" in value:
        raise InvalidParameter(name, f"must be at most {MAX_STRING} characters, without NUL")
    if kind is ParamType.ENUM and value not in spec.choices:
        raise InvalidParameter(name, f"must be one of {', '.join(spec.choices)}")
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        raise InvalidParameter(name, f"must match {spec.pattern}")
    return value


def _shown(value: object) -> str:
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    return type(value).__name__ if not isinstance(value, str) else repr(value[:40])


def param_environment(values: Mapping[str, ParamValue]) -> tuple[str, ...]:
    """``LONGSHORE_PARAM_<NAME>=<value>`` entries (booleans as ``true``/``false``)."""
    return tuple(f"{ENV_PREFIX}{name.upper()}={_text(value)}" for name, value in values.items())


def _text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def params_file(values: Mapping[str, ParamValue]) -> bytes:
    """The content of ``/run/params.json``."""
    return json.dumps(dict(values), ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
