"""The source types Longshore knows, by name, and the rules every source's fields share.

One entry per source type in :data:`_SOURCES`; its position is the order in which the types
are listed to users. Everything else that needs the list (the admin API's flat fields, the
definition rules, the runner, the CLI) asks this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from jobrunner.config import RunnerConfig
from jobrunner.errors import InvalidDefinition, UnknownSource
from jobrunner.sources.base import Source
from jobrunner.sources.git.source import GitTag
from jobrunner.sources.tarball.sources import TarballPath, TarballUrl

__all__ = ["api_names", "from_api", "get", "names", "to_api", "validate"]

_SOURCES: Final[tuple[Source, ...]] = (GitTag(), TarballUrl(), TarballPath())


def names() -> tuple[str, ...]:
    """The names of every source type, in the order they are listed to users."""
    return tuple(source.name for source in _SOURCES)


def get(name: object) -> Source:
    """The source type called ``name``; :class:`UnknownSource` (an ``InvalidDefinition`` of
    the field ``source``) listing the known names otherwise."""
    for source in _SOURCES:
        if source.name == name:
            return source
    raise UnknownSource(name, names())


def api_names() -> dict[str, str]:
    """Every field any source type declares, by name, with its API name (a field shared by
    several types, such as ``tarball_sha256``, appears once)."""
    found: dict[str, str] = {}
    for source in _SOURCES:
        for declared in source.fields:
            found.setdefault(declared.name, declared.api_name)
    return found


def to_api(fields: Mapping[str, str]) -> dict[str, str | None]:
    """``fields`` spelled as the admin API shows them: every declared API name, ``None``
    for the fields that are not set."""
    return {api: fields.get(name) for name, api in api_names().items()}


def from_api(values: Mapping[str, object]) -> dict[str, object]:
    """The source fields among ``values`` (keyed by API name), by field name; a field that
    is absent or ``None`` is left out. Values are not checked: :func:`validate` does that."""
    found: dict[str, object] = {}
    for name, api in api_names().items():
        value = values.get(api)
        if value is not None:
            found[name] = value
    return found


def validate(name: object, fields: object, config: RunnerConfig) -> tuple[Source, dict[str, str]]:
    """The source type called ``name`` and ``fields`` checked against its rules.

    First the rules every source type shares (see :class:`~jobrunner.sources.base.Source`),
    then the type's own :meth:`~jobrunner.sources.base.Source.validate`. Raises
    :class:`InvalidDefinition` naming the field by its API name.
    """
    source = get(name)
    if not isinstance(fields, Mapping):
        raise InvalidDefinition("source", "the source's fields must be a mapping")
    return source, source.validate(_declared(source, fields), config)


def _declared(source: Source, fields: Mapping[object, object]) -> dict[str, str]:
    """The set fields of ``source``; refuses a field of the wrong type, a required one
    missing, or one the source does not declare."""
    spelled = api_names()
    own = {declared.name: declared for declared in source.fields}
    values: dict[str, str] = {}
    for key in [*spelled, *(key for key in fields if key not in spelled)]:
        value = fields.get(key)
        api = spelled.get(key, str(key)) if isinstance(key, str) else repr(key)
        if value is not None and not isinstance(value, str):
            raise InvalidDefinition(api, "must be a string")
        if value is None or not value.strip():
            if key in own and own[key].required:
                raise InvalidDefinition(api, f"is required for source {source.name}")
            continue
        if key not in own:
            raise InvalidDefinition(api, f"is not used by source {source.name}; leave it unset")
        values[own[key].name] = value
    return values
