"""Typed job parameters and secret grants: declarations checked, values resolved from a
schedule's values, a manual run's overrides (overridable parameters only) and defaults;
each refusal names the parameter."""

from __future__ import annotations

import json

import pytest

from jobrunner.errors import InvalidDefinition, InvalidParameter
from jobrunner.params import check_grants, check_specs, param_environment, params_file, resolve
from store.jobs.models import ParamSpec, ParamType, SecretGrant

SPECS = check_specs(
    [
        ParamSpec(name="region", type=ParamType.ENUM, choices=("eu", "us"), default="eu"),
        ParamSpec(name="count", type=ParamType.INTEGER, required=True, overridable=True),
        ParamSpec(name="dry", type=ParamType.BOOLEAN, default=False, overridable=True),
        ParamSpec(name="tag", pattern=r"v[0-9]+", overridable=True),
    ]
)


def test_defaults_fill_what_is_not_given() -> None:
    assert resolve(SPECS, overrides={"count": 3}) == {"count": 3, "region": "eu", "dry": False}


def test_a_schedule_may_set_any_parameter_and_a_manual_run_only_overridable_ones() -> None:
    assert resolve(SPECS, scheduled={"region": "us", "count": 1})["region"] == "us"
    with pytest.raises(InvalidParameter, match=r"params\.region: is not overridable") as refused:
        resolve(SPECS, overrides={"region": "us", "count": 1})
    assert refused.value.name == "region"


@pytest.mark.parametrize(
    ("given", "name", "message"),
    [
        ({"count": "many"}, "count", "must be an integer"),
        ({"count": True}, "count", "must be an integer"),
        ({"count": 1, "dry": "maybe"}, "dry", "must be a boolean"),
        ({"count": 1, "tag": "x1"}, "tag", r"must match v\[0-9\]\+"),
        ({"count": 1, "tag": 5}, "tag", "must be a string"),
        ({"count": 1, "nope": 1}, "nope", "declares no such parameter"),
        ({}, "count", "is required"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(given, name, message) -> None:
    with pytest.raises(InvalidParameter, match=message) as refused:
        resolve(SPECS, overrides=given)
    assert str(refused.value).startswith(f"params.{name}:")


def test_strings_from_a_command_line_are_converted() -> None:
    values = resolve(SPECS, overrides={"count": "-7", "dry": "TRUE", "tag": "v12"})
    assert values == {"count": -7, "dry": True, "tag": "v12", "region": "eu"}


def test_values_reach_the_container_as_variables_and_a_json_file() -> None:
    values = {"count": 7, "dry": True, "region": "eu"}
    assert param_environment(values) == (
        "LONGSHORE_PARAM_COUNT=7",
        "LONGSHORE_PARAM_DRY=true",
        "LONGSHORE_PARAM_REGION=eu",
    )
    assert json.loads(params_file(values)) == values


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (ParamSpec(name="1x"), "params[0].name"),
        (ParamSpec(name="x", type="float"), "params[0].type"),  # type: ignore[arg-type]
        (ParamSpec(name="x", type=ParamType.ENUM), "params[0].choices"),
        (ParamSpec(name="x", pattern="("), "params[0].pattern"),
        (ParamSpec(name="x", type=ParamType.INTEGER, pattern="1"), "params[0].pattern"),
        (ParamSpec(name="x", type=ParamType.INTEGER, default="ten"), "params[0].default"),
        (
            ParamSpec(name="x", type=ParamType.ENUM, choices=("a",), default="b"),
            "params[0].default",
        ),
    ],
)
def test_bad_declarations_are_refused_naming_the_field(spec: ParamSpec, field: str) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        check_specs([spec])
    assert refused.value.field == field


def test_a_parameter_declared_twice_is_refused() -> None:
    with pytest.raises(InvalidDefinition, match="declared twice"):
        check_specs([ParamSpec(name="a"), ParamSpec(name="A")])


@pytest.mark.parametrize(
    ("grant", "field"),
    [
        (SecretGrant(name="s"), "secrets[0]"),
        (SecretGrant(name="s", env="A", file="a"), "secrets[0]"),
        (SecretGrant(name="s", env="1A"), "secrets[0].env"),
        (SecretGrant(name="s", env="LONGSHORE_PARAM_X"), "secrets[0].env"),
        (SecretGrant(name="s", file="../etc/passwd"), "secrets[0].file"),
        (SecretGrant(name="s", file=".."), "secrets[0].file"),
    ],
)
def test_bad_grants_are_refused_naming_the_field(grant: SecretGrant, field: str) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        check_grants([grant])
    assert refused.value.field == field


def test_a_target_given_twice_is_refused() -> None:
    grants = [SecretGrant(name="a", file="x"), SecretGrant(name="b", file="x")]
    with pytest.raises(InvalidDefinition, match="x is given twice"):
        check_grants(grants)
