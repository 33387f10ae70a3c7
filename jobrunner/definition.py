"""The rules of a job definition, checked when it is saved and again when it runs.

:func:`validate_definition` checks a :class:`~store.jobs.models.JobDefinition` against the
runner's settings (:class:`~jobrunner.config.RunnerConfig`) and returns it normalised
(``tarballSha256`` lower-cased, paths in canonical form, empty optional strings as ``None``,
lists as tuples). The first broken rule raises :class:`~jobrunner.errors.InvalidDefinition`
naming the field as the API spells it (``tarballSha256``, ``env[2]``, ``resources.cpus``).

These checks need no network: the source modules repeat the scheme, allowlist and address
checks on every hop when they fetch, and resolve ``tarballPath`` against the real file system
(symlinks included). Running them again at run time catches a definition saved under older,
looser settings.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import SplitResult, urlsplit

from jobrunner.config import RunnerConfig
from jobrunner.errors import InvalidDefinition
from jobrunner.sources.netcheck import host_allowed, is_public_address, parse_address
from store.jobs.models import JOB_NAME, JobDefinition, JobSource, OutputLimitAction, Resources
from store.queue.models import QUEUE_NAME

__all__ = ["validate_definition"]

TAG: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}$")
ENV_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
NETWORK: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

MAX_DESCRIPTION: Final = 4096
MAX_URL: Final = 2048
MAX_PATH: Final = 1024
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
# Percent-encodings that could smuggle '.', '/' or '\' past a prefix check.
_ENCODED_SEPARATOR: Final = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)

# The fields of each source: required, optional; every other source field must be unset.
_SOURCE_FIELDS: Final = {
    JobSource.GIT_TAG: (("repo", "tag"), ()),
    JobSource.TARBALL_URL: (("tarball_url", "tarball_sha256"), ()),
    JobSource.TARBALL_PATH: (("tarball_path",), ("tarball_sha256",)),
}
_API_NAME: Final = {
    "repo": "repo",
    "tag": "tag",
    "tarball_url": "tarballUrl",
    "tarball_path": "tarballPath",
    "tarball_sha256": "tarballSha256",
}


def validate_definition(defn: JobDefinition, config: RunnerConfig) -> JobDefinition:
    """Check ``defn`` against every rule and ``config``; return it normalised.

    Raises :class:`InvalidDefinition` (``field``, message) for the first rule broken.
    ``revision`` and the timestamps are returned unchanged.
    """
    name = _name(defn.name)
    source = _source(defn.source)
    sources = _source_fields(defn, source)
    if sources["repo"] is not None:
        sources["repo"] = _repo(sources["repo"], config)
    if sources["tag"] is not None:
        sources["tag"] = _tag(sources["tag"])
    if sources["tarball_url"] is not None:
        sources["tarball_url"] = _tarball_url(sources["tarball_url"], config)
    if sources["tarball_path"] is not None:
        if config.tarball_dir is None:
            raise InvalidDefinition(
                "tarballPath", "tarball paths are disabled: WORKER_JOB_TARBALL_DIR is not set"
            )
        sources["tarball_path"] = _relative_path("tarballPath", sources["tarball_path"])
    if sources["tarball_sha256"] is not None:
        sources["tarball_sha256"] = _sha256(sources["tarball_sha256"])
    return dataclasses.replace(
        defn,
        name=name,
        source=source,
        description=_description(defn.description),
        repo=sources["repo"],
        tag=sources["tag"],
        tarball_url=sources["tarball_url"],
        tarball_path=sources["tarball_path"],
        tarball_sha256=sources["tarball_sha256"],
        path=_context_path(defn.path),
        dockerfile=_dockerfile(defn.dockerfile),
        command=_command(defn.command),
        env=_env(defn.env),
        queue=_queue(defn.queue),
        retries=_int("retries", defn.retries, 0, MAX_RETRIES),
        timeout_seconds=_int("timeoutSeconds", defn.timeout_seconds, 1, MAX_TIMEOUT_SECONDS),
        resources=_resources(defn.resources),
        network=_network(defn.network, config),
        artifacts_path=_artifacts_path(defn.artifacts_path),
        output_bytes=_output_bytes(defn.output_bytes, config),
        on_output_limit=_on_output_limit(defn.on_output_limit),
    )


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


def _source(value: object) -> JobSource:
    try:
        return JobSource(value if isinstance(value, str) else "")
    except ValueError:
        choices = ", ".join(s.value for s in JobSource)
        raise InvalidDefinition("source", f"must be one of {choices}, got {value!r}") from None


def _source_fields(defn: JobDefinition, source: JobSource) -> dict[str, str | None]:
    """The source fields, empty strings read as unset (seed clients send ``""`` for fields
    they do not use), with the required ones present and the foreign ones absent."""
    required, optional = _SOURCE_FIELDS[source]
    values: dict[str, str | None] = {}
    for attr, api in _API_NAME.items():
        value = getattr(defn, attr)
        if value is not None and not isinstance(value, str):
            raise InvalidDefinition(api, "must be a string")
        values[attr] = None if value is None or not value.strip() else value
        if values[attr] is None and attr in required:
            raise InvalidDefinition(api, f"is required for source {source.value}")
        if values[attr] is not None and attr not in required and attr not in optional:
            raise InvalidDefinition(api, f"is not used by source {source.value}; leave it unset")
    return values


# --- git --------------------------------------------------------------------------------------


def _repo(value: str, config: RunnerConfig) -> str:
    url = _url("repo", value, config)
    if url.query or url.fragment:
        raise InvalidDefinition("repo", "must not have a query or fragment")
    if not _repo_allowed(value, config.repo_allowlist):
        raise InvalidDefinition(
            "repo", "is not in the repository allowlist (WORKER_JOB_REPO_ALLOWLIST)"
        )
    return value


def _repo_allowed(url: str, allowlist: tuple[str, ...]) -> bool:
    for entry in (e.strip() for e in allowlist):
        if entry == "*" or entry == url:
            return True
        if entry.endswith("/") and url.startswith(entry) and len(url) > len(entry):
            return True
    return False


def _tag(value: str) -> str:
    if not TAG.fullmatch(value):
        raise InvalidDefinition(
            "tag",
            "must be 1-128 characters of letters, digits, '.', '_', '/', '+' or '-', "
            "starting with a letter or digit",
        )
    components = value.split("/")
    if (
        ".." in value
        or "@{" in value
        or value.endswith(("/", "."))
        or any(not part or part.startswith(".") or part.endswith(".lock") for part in components)
    ):
        raise InvalidDefinition(
            "tag",
            "is not a valid tag name: no '..', '//', '@{', component starting with '.' or "
            "ending with '.lock', and no trailing '/' or '.'",
        )
    return value


# --- tarballs ---------------------------------------------------------------------------------


def _tarball_url(value: str, config: RunnerConfig) -> str:
    url = _url("tarballUrl", value, config)
    if url.fragment:
        raise InvalidDefinition("tarballUrl", "must not have a fragment")
    assert url.hostname is not None  # checked by _url
    if not host_allowed(url.hostname, config.tarball_allowlist):
        raise InvalidDefinition(
            "tarballUrl",
            f"host {url.hostname!r} is not in the tarball allowlist (WORKER_JOB_TARBALL_ALLOWLIST)",
        )
    return value


def _sha256(value: str) -> str:
    lowered = value.lower()
    if not SHA256.fullmatch(lowered):
        raise InvalidDefinition("tarballSha256", "must be a SHA256: 64 hexadecimal digits")
    return lowered


def _url(field: str, value: str, config: RunnerConfig) -> SplitResult:
    """An absolute https (or, if allowed, http) URL with a host, no credentials, no
    characters that could be read two ways, and no literal private address unless allowed."""
    if len(value) > MAX_URL:
        raise InvalidDefinition(field, f"must be at most {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in value):
        raise InvalidDefinition(field, "must not contain spaces, control characters or '\\'")
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise InvalidDefinition(field, f"is not a valid URL: {exc}") from None
    schemes = ("https", "http") if config.allow_http else ("https",)
    if url.scheme.lower() not in schemes:
        hint = " (plain http is not allowed)" if url.scheme.lower() == "http" else ""
        raise InvalidDefinition(field, f"must be an https:// URL{hint}")
    if not url.hostname:
        raise InvalidDefinition(field, "must name a host")
    if url.username is not None or url.password is not None:
        raise InvalidDefinition(field, "must not embed credentials")
    segments = url.path.split("/")
    if "." in segments or ".." in segments or _ENCODED_SEPARATOR.search(url.path):
        raise InvalidDefinition(field, "must not contain '.' or '..' segments or encoded '/'")
    address = parse_address(url.hostname)
    if address is not None and not config.allow_private_hosts and not is_public_address(address):
        raise InvalidDefinition(
            field, f"address {address} is not public (WORKER_JOB_ALLOW_PRIVATE_HOSTS is off)"
        )
    return url


# --- build context and container --------------------------------------------------------------


def _relative_path(field: str, value: object) -> str:
    """A relative path that stays below its root, in canonical form (``./a//b`` is ``a/b``)."""
    if not isinstance(value, str) or not value:
        raise InvalidDefinition(field, "must be a non-empty string")
    if len(value) > MAX_PATH:
        raise InvalidDefinition(field, f"must be at most {MAX_PATH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value) or "\\" in value:
        raise InvalidDefinition(field, "must not contain control characters or '\\'")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise InvalidDefinition(field, "must be a relative path")
    if ".." in path.parts:
        raise InvalidDefinition(field, "must not contain '..'")
    return str(path)


def _context_path(value: object) -> str | None:
    if value is None or value == "":
        return None
    path = _relative_path("path", value)
    return None if path == "." else path


def _dockerfile(value: object) -> str:
    if value is None or value == "":
        return "Dockerfile"
    path = _relative_path("dockerfile", value)
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


def _resources(value: object) -> Resources:
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
    return Resources(
        memory_mb=_int("resources.memoryMb", value.memory_mb, *MEMORY_MB),
        cpus=float(cpus),
        pids_limit=_int("resources.pidsLimit", value.pids_limit, *PIDS_LIMIT),
    )


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
