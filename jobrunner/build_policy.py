"""The Dockerfile policy: what a source's Dockerfile may ask of the build, checked before any
byte reaches the Docker engine.

``docker build`` executes a source: the daemon itself fetches ``ADD`` URLs (from the host's
network, outside every sandbox a job gets), and ``FROM`` / ``COPY --from`` /
``RUN --mount=from=`` can read any image the engine holds, including images other
deployments built. So the Dockerfile is parsed with Docker's own parser (the ``dockerfile``
package wraps the Go parser the engine uses) and refused, naming the line, when it:

- has a parser directive that selects another frontend (``# syntax=``) or a check mode
  (``# check=``); ``# escape=`` is the parser's business and allowed;
- ``ADD``\\s a URL or a git reference (anything with a scheme, ``git@host:...``);
- names an image (``FROM``, ``COPY --from``, ``RUN --mount=...,from=...``) that is neither an
  earlier stage nor matched by a pattern of ``WORKER_JOB_BASE_IMAGES``; an image id or
  digest (``sha256:...``, a bare hex id) only matches a pattern that names ids, never ``*``;
- uses a ``$`` in an image reference that is not a build argument declared before the first
  ``FROM`` with a plain default (no other expansion is interpreted: refusing is safer than
  guessing how the daemon would expand it);
- uses BuildKit-only escapes from the sandbox: ``RUN --network`` other than ``none``,
  ``RUN --security``, ``RUN --mount`` of type ``ssh`` or ``secret``.

``ONBUILD`` triggers are checked as if they were instructions of the stage. The images the
build needs (:attr:`DockerfilePlan.images`) are returned so that the engine can make sure
each one is present (no silent pull) and was not built by Longshore for another scope.

:func:`check_build_context` reads the Dockerfile out of a build context made by
:mod:`jobrunner.archive` and checks it; the runner calls it only when no image is cached for
the source (the cache key includes the policy's settings, so a stricter policy builds, and
checks, again).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import dockerfile

from jobrunner.archive import read_context_file
from jobrunner.errors import SourceRejected

__all__ = ["DockerfilePlan", "check_build_context", "check_dockerfile", "normalise_image"]

MAX_DOCKERFILE_BYTES: Final = 1024 * 1024
"""A Dockerfile larger than this is refused before it is parsed."""

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_ALLOWED_DIRECTIVES: Final = frozenset({"escape"})
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GIT_REF = re.compile(r"^[\w.-]+@[\w.-]+:|\.git(#.*)?$|^git://")
_HEX_ID = re.compile(r"^(sha256:)?[0-9a-f]{12,64}$")
_HEX_PREFIX = re.compile(r"^[0-9a-f]{12}")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_DEFAULT_REGISTRY = "docker.io/"
_LIBRARY = "docker.io/library/"


@dataclass(frozen=True, kw_only=True)
class DockerfilePlan:
    """What a Dockerfile that passed the policy needs from the engine."""

    images: tuple[str, ...]
    """The external images it names (normalised, without duplicates, in order)."""
    stages: int
    """How many build stages it has."""


def normalise_image(reference: str) -> str:
    """``reference`` as the engine names it in ``RepoTags``: a tag added when there is none
    (``busybox`` -> ``busybox:latest``), Docker Hub's implicit prefixes dropped
    (``docker.io/library/busybox:1`` -> ``busybox:1``). Ids and digests are kept as given."""
    ref = reference.strip()
    if _HEX_ID.fullmatch(ref) or "@" in ref:
        return ref
    if ref.startswith(_LIBRARY):
        ref = ref[len(_LIBRARY) :]
    elif ref.startswith(_DEFAULT_REGISTRY):
        ref = ref[len(_DEFAULT_REGISTRY) :]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        ref = f"{ref}:latest"
    return ref


def image_allowed(image: str, patterns: Sequence[str]) -> bool:
    """Whether ``image`` (normalised) matches one of ``patterns`` (shell-style ``*``, ``?``
    and ``[...]``, matched against the normalised name). An id or a digest reference
    matches only a pattern that itself names ids or digests (starts with ``sha256:`` or hex
    digits, or contains ``@``), so ``*`` never admits a bare image id: ids are how one
    scope's images would be reached from another."""
    is_id = _names_id(image)
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or _names_id(pattern) != is_id:
            continue
        if not is_id:
            pattern = _normalise_pattern(pattern)
        if fnmatch.fnmatchcase(image, pattern):
            return True
    return False


def _names_id(text: str) -> bool:
    return "@" in text or text.startswith("sha256:") or bool(_HEX_PREFIX.match(text))


def _normalise_pattern(pattern: str) -> str:
    if any(char in pattern for char in "*?["):
        for prefix in (_LIBRARY, _DEFAULT_REGISTRY):
            if pattern.startswith(prefix):
                return pattern[len(prefix) :]
        return pattern
    return normalise_image(pattern)


def check_dockerfile(
    text: str, *, allowed_images: Sequence[str], name: str = "Dockerfile"
) -> DockerfilePlan:
    """Check ``text`` against the policy (see the module docstring) and return what the
    build needs; raise :class:`SourceRejected` naming the file and line otherwise."""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_DOCKERFILE_BYTES:
        raise SourceRejected(f"{name}: larger than {MAX_DOCKERFILE_BYTES} bytes")
    if "\x00" in text:
        raise SourceRejected(f"{name}: contains a NUL byte")
    _check_directives(text, name)
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        raise SourceRejected(f"{name}: cannot be parsed: {exc}") from None
    return _Checker(name, allowed_images).check(commands)


def check_build_context(
    context_tar: Path, name: str, *, allowed_images: Sequence[str]
) -> DockerfilePlan:
    """:func:`check_dockerfile` of the Dockerfile ``name`` in a build context (blocking:
    async callers use ``asyncio.to_thread``)."""
    data = read_context_file(context_tar, name, max_bytes=MAX_DOCKERFILE_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceRejected(f"{name}: is not UTF-8 text") from None
    return check_dockerfile(text, allowed_images=allowed_images, name=name)


def _check_directives(text: str, name: str) -> None:
    """Parser directives sit at the very top, one per line, before any other comment,
    blank line or instruction; the first line that is not one ends them. Docker's parser
    drops a leading byte order mark first, so it is dropped here too."""
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        found = _DIRECTIVE.match(line)
        if found is None:
            return
        key = found.group(1).lower()
        if key not in _ALLOWED_DIRECTIVES:
            raise SourceRejected(
                f"{name} line {number}: the parser directive '{key}' is not allowed "
                "(it would select another build frontend or mode)"
            )


class _Checker:
    def __init__(self, name: str, allowed_images: Sequence[str]) -> None:
        self._name = name
        self._allowed = tuple(allowed_images)
        self._args: dict[str, str] = {}
        self._stages: list[str] = []
        self._images: list[str] = []

    def check(self, commands: Sequence[dockerfile.Command]) -> DockerfilePlan:
        for command in commands:
            self._instruction(command, command.cmd.upper(), command.flags, command.value)
        if not self._stages:
            self._refuse(1, "has no FROM instruction")
        return DockerfilePlan(images=tuple(dict.fromkeys(self._images)), stages=len(self._stages))

    def _refuse(self, line: int, message: str) -> None:
        raise SourceRejected(f"{self._name} line {line}: {message}")

    def _instruction(
        self, command: dockerfile.Command, cmd: str, flags: Sequence[str], value: Sequence[str]
    ) -> None:
        line = command.start_line
        if cmd == "ARG" and not self._stages:
            for item in value:
                key, sep, default = item.partition("=")
                if sep:
                    self._args[key] = default.strip().strip("\"'")
        elif cmd == "FROM":
            self._from(line, flags, value)
        elif cmd == "ONBUILD":
            sub = (command.sub_cmd or "").upper()
            if sub in ("ONBUILD", "FROM", "MAINTAINER"):
                self._refuse(line, f"ONBUILD {sub} is not allowed")
            self._instruction(command, sub, flags, value)
        elif not self._stages:
            self._refuse(line, f"{cmd} before the first FROM")
        elif cmd == "ADD":
            self._add(line, value)
            self._copy_from(line, flags)
        elif cmd == "COPY":
            self._copy_from(line, flags)
        elif cmd == "RUN":
            self._run(line, flags)

    def _from(self, line: int, flags: Sequence[str], value: Sequence[str]) -> None:
        if not value:
            self._refuse(line, "FROM names no image")
        reference = value[0]
        alias = value[2] if len(value) >= 3 and value[1].upper() == "AS" else None
        if not self._is_stage(reference):
            self._image(line, reference, "FROM")
        self._stages.append((alias or "").lower())

    def _add(self, line: int, value: Sequence[str]) -> None:
        for source in value[:-1]:
            if _SCHEME.match(source) or _GIT_REF.search(source):
                self._refuse(
                    line,
                    f"ADD of {source!r} is not allowed: the Docker daemon would fetch it from "
                    "the host's network; put the file in the source instead",
                )

    def _copy_from(self, line: int, flags: Sequence[str]) -> None:
        for flag in flags:
            key, _, target = flag.partition("=")
            if key.lower() == "--from" and not self._is_stage(target):
                self._image(line, target, "COPY --from")

    def _run(self, line: int, flags: Sequence[str]) -> None:
        for flag in flags:
            key, _, setting = flag.partition("=")
            key = key.lower()
            if key == "--network" and setting.lower() != "none":
                self._refuse(line, f"RUN --network={setting} is not allowed (builds have none)")
            elif key == "--security":
                self._refuse(line, "RUN --security is not allowed")
            elif key == "--mount":
                self._mount(line, setting)

    def _mount(self, line: int, setting: str) -> None:
        options = dict(_options(setting))
        kind = options.get("type", "bind").lower()
        if kind in ("ssh", "secret"):
            self._refuse(line, f"RUN --mount=type={kind} is not allowed")
        source = options.get("from")
        if source is not None and not self._is_stage(source):
            self._image(line, source, "RUN --mount from")

    def _is_stage(self, reference: str) -> bool:
        """An earlier stage, by name (case-insensitive) or by index."""
        if reference.isdigit():
            return int(reference) < len(self._stages)
        return reference.lower() in self._stages

    def _image(self, line: int, reference: str, where: str) -> None:
        expanded = self._expand(line, reference, where)
        if expanded.lower() == "scratch":
            return
        image = normalise_image(expanded)
        if not image_allowed(image, self._allowed):
            self._refuse(
                line,
                f"{where} {reference!r}: the image {image!r} is not an earlier stage and is "
                "not allowed by WORKER_JOB_BASE_IMAGES",
            )
        self._images.append(image)

    def _expand(self, line: int, reference: str, where: str) -> str:
        def value_of(found: re.Match[str]) -> str:
            key = found.group(1) or found.group(2)
            if key not in self._args:
                self._refuse(
                    line,
                    f"{where} {reference!r}: ${key} is not a build argument with a default "
                    "declared before the first FROM",
                )
            return self._args[key]

        expanded = _VARIABLE.sub(value_of, reference)
        if "$" in expanded or not expanded:
            self._refuse(line, f"{where} {reference!r}: cannot tell which image this names")
        return expanded


def _options(setting: str) -> Iterator[tuple[str, str]]:
    """The ``key=value`` pairs of a ``--mount`` setting (``type=cache,target=/x``)."""
    for part in setting.split(","):
        key, _, value = part.partition("=")
        yield key.strip().lower(), value.strip()
