"""The rules of a job definition, checked when it is saved and again when it runs.

:func:`validate_definition` checks a :class:`~store.jobs.models.JobDefinition` against the
runner's settings (:class:`~jobrunner.config.RunnerConfig`) and returns it normalised
(paths in canonical form, empty optional strings as ``None``, lists as tuples; the source's
fields as its source type normalises them). The first broken rule raises
:class:`~jobrunner.errors.InvalidDefinition` naming the field as the API spells it
(``tarballSha256``, ``env[2]``, ``resources.cpus``).

The source and its fields are checked by the source type (:mod:`jobrunner.sources`); the
rules here are those of every job. These checks need no network: the sources repeat the
scheme, allowlist and address checks on every hop when they fetch, and resolve local paths
against the real file system (symlinks included). Running them again at run time catches a
definition saved under older, looser settings.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import PurePosixPath
from typing import Final

from jobrunner.config import RunnerConfig
from jobrunner.errors import InvalidDefinition
from jobrunner.fieldrules import MAX_PATH, check_relative_path
from jobrunner.params import check_grants, check_specs
from jobrunner.sources import registry
from store.jobs.models import (
    JOB_NAME,
    JobDefinition,
    OutputLimitAction,
    Resources,
    SecretGrant,
)
from store.queue.models import QUEUE_NAME

__all__ = ["validate_definition"]

ENV_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER_PART: Final = r"(?:[0-9]{1,10}|[a-z_][a-z0-9_.-]{0,31})"
USER: Final = re.compile(rf"^{_USER_PART}(?::{_USER_PART})?$")
"""``uid``, ``uid:gid``, or names the image's ``/etc/passwd`` and ``/etc/group`` know."""
NETWORK: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

MAX_DESCRIPTION: Final = 4096
MAX_COMMAND_ITEMS: Final = 256
MAX_COMMAND_ITEM: Final = 8192
MAX_ENV_ITEMS: Final = 256
MAX_ENV_ITEM: Final = 32 * 1024
MAX_RETRIES: Final = 100
MAX_TIMEOUT_SECONDS: Final = 7 * 24 * 3600
MEMORY_MB: Final = (16, 1024 * 1024)
CPUS: Final = (0.01, 1024.0)
PIDS_LIMIT: Final = (1, 65536)

# The host's own network stack: no isolation at all, so never allowed, even if allowlisted.
# (Other modes such as "container:<id>" are excluded by the NETWORK pattern.)
_HOST_NETWORK: Final = "host"
# Collecting artifacts from these would read the kernel's or the image's own files.
_FORBIDDEN_ARTIFACT_ROOTS: Final = ("/proc", "/sys", "/dev")


def validate_definition(defn: JobDefinition, config: RunnerConfig) -> JobDefinition:
    """Check ``defn`` against every rule and ``config``; return it normalised.

    Raises :class:`InvalidDefinition` (``field``, message) for the first rule broken.
    ``revision`` and the timestamps are returned unchanged.
    """
    name = _name(defn.name)
    source, source_fields = registry.validate(defn.source, defn.source_fields, config)
    return dataclasses.replace(
        defn,
        name=name,
        source=source.name,
        source_fields=source_fields,
        description=_description(defn.description),
        path=_context_path(defn.path),
        dockerfile=_dockerfile(defn.dockerfile),
        command=_command(defn.command),
        env=_env(defn.env),
        queue=_queue(defn.queue),
        retries=_int("retries", defn.retries, 0, MAX_RETRIES),
        timeout_seconds=_timeout(defn.timeout_seconds, config),
        resources=_resources(defn.resources, config),
        network=_network(defn.network, config),
        artifacts_path=_artifacts_path(defn.artifacts_path),
        output_bytes=_output_bytes(defn.output_bytes, config),
        on_output_limit=_on_output_limit(defn.on_output_limit),
        user=_user(defn.user),
        secrets=_grants(defn.secrets, defn.env),
        params=check_specs(defn.params),
    )


def _grants(grants: object, env: object) -> tuple[SecretGrant, ...]:
    if not isinstance(grants, tuple | list):
        raise InvalidDefinition("secrets", "must be a list")
    checked = check_grants(grants)
    keys = {str(item).partition("=")[0] for item in env} if isinstance(env, tuple | list) else set()
    for index, grant in enumerate(checked):
        if grant.env in keys:
            raise InvalidDefinition(f"secrets[{index}].env", f"{grant.env} is also set in env")
    return checked


# --- identity ---------------------------------------------------------------------------------


def _name(value: object) -> str:
    if not isinstance(value, str) or not JOB_NAME.fullmatch(value):
        raise InvalidDefinition(
            "name",
            "must be 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
        )
    return value


def _description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidDefinition("description", "must be a string")
    if len(value) > MAX_DESCRIPTION:
        raise InvalidDefinition("description", f"must be at most {MAX_DESCRIPTION} characters")
    if "\0" in value:
        raise InvalidDefinition("description", "must not contain NUL characters")
    return value


# --- build context and container --------------------------------------------------------------


def _context_path(value: object) -> str | None:
    if value is None or value == "":
        return None
    path = check_relative_path("path", value)
    return None if path == "." else path


def _dockerfile(value: object) -> str:
    if value is None or value == "":
        return "Dockerfile"
    path = check_relative_path("dockerfile", value)
    if path == ".":
        raise InvalidDefinition("dockerfile", "must name a file")
    return path


def _strings(field: str, value: object, *, max_items: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, tuple | list):
        raise InvalidDefinition(field, "must be a list of strings")
    if len(value) > max_items:
        raise InvalidDefinition(field, f"must have at most {max_items} entries")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidDefinition(f"{field}[{index}]", "must be a string")
        if "\0" in item:
            raise InvalidDefinition(f"{field}[{index}]", "must not contain NUL characters")
    return tuple(value)


def _command(value: object) -> tuple[str, ...]:
    command = _strings("command", value, max_items=MAX_COMMAND_ITEMS)
    for index, item in enumerate(command):
        if len(item) > MAX_COMMAND_ITEM:
            raise InvalidDefinition(
                f"command[{index}]", f"must be at most {MAX_COMMAND_ITEM} characters"
            )
    return command


def _env(value: object) -> tuple[str, ...]:
    env = _strings("env", value, max_items=MAX_ENV_ITEMS)
    seen: set[str] = set()
    for index, item in enumerate(env):
        field = f"env[{index}]"
        key, equals, _value = item.partition("=")
        if not equals:
            # A bare KEY would copy the service's own variable into the container.
            raise InvalidDefinition(field, "must be KEY=VALUE; a bare KEY is not allowed")
        if not ENV_KEY.fullmatch(key):
            raise InvalidDefinition(
                field, "KEY must be letters, digits and '_', not starting with a digit"
            )
        if len(item) > MAX_ENV_ITEM:
            raise InvalidDefinition(field, f"must be at most {MAX_ENV_ITEM} characters")
        if key in seen:
            raise InvalidDefinition(field, f"{key} is set twice")
        seen.add(key)
    return env


def _queue(value: object) -> str:
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value):
        raise InvalidDefinition(
            "queue",
            "must be 1-128 letters, digits, '.', '_', ':' or '-', starting with one "
            "of the first two",
        )
    return value


def _int(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidDefinition(field, f"must be an integer from {low} to {high}")
    return value


def _ceiling(field: str, value: float, ceiling: float, variable: str) -> None:
    if value > ceiling:
        raise InvalidDefinition(
            field, f"{value:g} is above this server's ceiling of {ceiling:g} ({variable})"
        )


def _timeout(value: object, config: RunnerConfig) -> int:
    seconds = _int("timeoutSeconds", value, 1, MAX_TIMEOUT_SECONDS)
    ceiling = config.ceilings.max_timeout_seconds
    _ceiling("timeoutSeconds", seconds, ceiling, "WORKER_JOB_MAX_TIMEOUT_SECONDS")
    return seconds


def _resources(value: object, config: RunnerConfig) -> Resources:
    if not isinstance(value, Resources):
        raise InvalidDefinition("resources", "must be an object with memoryMb, cpus, pidsLimit")
    cpus = value.cpus
    if (
        isinstance(cpus, bool)
        or not isinstance(cpus, int | float)
        or not math.isfinite(cpus)
        or not CPUS[0] <= cpus <= CPUS[1]
    ):
        raise InvalidDefinition("resources.cpus", f"must be a number from {CPUS[0]} to {CPUS[1]}")
    resources = Resources(
        memory_mb=_int("resources.memoryMb", value.memory_mb, *MEMORY_MB),
        cpus=float(cpus),
        pids_limit=_int("resources.pidsLimit", value.pids_limit, *PIDS_LIMIT),
    )
    ceilings = config.ceilings
    for field, asked, ceiling, variable in (
        ("resources.memoryMb", resources.memory_mb, ceilings.max_memory_mb, "MAX_MEMORY_MB"),
        ("resources.cpus", resources.cpus, ceilings.max_cpus, "MAX_CPUS"),
        ("resources.pidsLimit", resources.pids_limit, ceilings.max_pids, "MAX_PIDS"),
    ):
        _ceiling(field, asked, ceiling, f"WORKER_JOB_{variable}")
    return resources


def _user(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not USER.fullmatch(value):
        raise InvalidDefinition(
            "user", "must be a uid, uid:gid, or user[:group] names (e.g. 1000:1000, app)"
        )
    return value


def _network(value: object, config: RunnerConfig) -> str:
    if value is None or value == "":
        return "none"
    if not isinstance(value, str) or not NETWORK.fullmatch(value):
        raise InvalidDefinition("network", "must be 'none' or a Docker network name")
    if value == "none":
        return value
    if value == _HOST_NETWORK:
        raise InvalidDefinition("network", "host networking is never allowed")
    if value not in config.network_allowlist:
        raise InvalidDefinition(
            "network", f"{value!r} is not in the network allowlist (WORKER_JOB_NETWORK)"
        )
    return value


def _artifacts_path(value: object) -> str:
    if value is None or value == "":
        return "/artifacts"
    if not isinstance(value, str) or len(value) > MAX_PATH:
        raise InvalidDefinition("artifactsPath", f"must be a path of at most {MAX_PATH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value) or "\\" in value:
        raise InvalidDefinition("artifactsPath", "must not contain control characters or '\\'")
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise InvalidDefinition("artifactsPath", "must be an absolute path in the container")
    if ".." in path.parts:
        raise InvalidDefinition("artifactsPath", "must not contain '..'")
    # "//x" is a distinct path to PurePosixPath (POSIX leaves it open); to Docker it is "/x".
    canonical = "/" + "/".join(path.parts[1:])
    if canonical == "/" or any(
        canonical == root or canonical.startswith(root + "/") for root in _FORBIDDEN_ARTIFACT_ROOTS
    ):
        raise InvalidDefinition(
            "artifactsPath", "must be a directory of its own, not '/', /proc, /sys or /dev"
        )
    return canonical


def _output_bytes(value: object, config: RunnerConfig) -> int | None:
    if value is None:
        return None
    return _int("outputBytes", value, 1, config.output_bytes)


def _on_output_limit(value: object) -> OutputLimitAction:
    try:
        return OutputLimitAction(value if isinstance(value, str) else "")
    except ValueError:
        raise InvalidDefinition(
            "onOutputLimit", f"must be 'truncate' or 'fail', got {value!r}"
        ) from None
