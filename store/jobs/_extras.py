"""JSON forms of a definition's secret grants and parameter specs and of a run's parameter
values, shared by both backends (stored as JSON arrays and objects)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from store.jobs.errors import InvalidJobRecord
from store.jobs.models import ParamSpec, ParamType, ParamValue, SecretGrant


def grants_json(grants: tuple[SecretGrant, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for grant in grants:
        if not isinstance(grant, SecretGrant):
            raise InvalidJobRecord("secrets must be SecretGrant values")
        item: dict[str, Any] = {"name": grant.name}
        if grant.env is not None:
            item["env"] = grant.env
        if grant.file is not None:
            item["file"] = grant.file
        out.append(item)
    return out


def grants_from_json(items: Any) -> tuple[SecretGrant, ...]:
    return tuple(
        SecretGrant(name=str(item["name"]), env=item.get("env"), file=item.get("file"))
        for item in items or ()
    )


def params_json(params: tuple[ParamSpec, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for spec in params:
        if not isinstance(spec, ParamSpec):
            raise InvalidJobRecord("params must be ParamSpec values")
        out.append(
            {
                "name": spec.name,
                "type": ParamType(spec.type).value,
                "required": bool(spec.required),
                "default": spec.default,
                "pattern": spec.pattern,
                "choices": list(spec.choices),
                "overridable": bool(spec.overridable),
                "description": spec.description,
            }
        )
    return out


def params_from_json(items: Any) -> tuple[ParamSpec, ...]:
    return tuple(
        ParamSpec(
            name=str(item["name"]),
            type=ParamType(item.get("type", "string")),
            required=bool(item.get("required", False)),
            default=item.get("default"),
            pattern=item.get("pattern"),
            choices=tuple(item.get("choices") or ()),
            overridable=bool(item.get("overridable", False)),
            description=str(item.get("description") or ""),
        )
        for item in items or ()
    )


def values_json(values: Mapping[str, ParamValue] | None) -> dict[str, ParamValue] | None:
    """A run's parameter values as a JSON object (``None`` stays ``None``)."""
    if values is None:
        return None
    if not isinstance(values, Mapping):
        raise InvalidJobRecord("params must map parameter names to values")
    checked: dict[str, ParamValue] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, str | int | bool):
            raise InvalidJobRecord("params must map names to strings, integers or booleans")
        if isinstance(value, str) and "\0" in value:
            raise InvalidJobRecord(f"params.{key} must not contain NUL characters")
        checked[key] = value
    return checked


def values_from_json(value: Any) -> dict[str, ParamValue] | None:
    if value is None:
        return None
    return dict(value)
