"""SQL kept in ``.sql`` files under ``store/sql/<backend>/``, loaded once per process.

- ``migrations/NNN_name.sql``: numbered schema migrations, applied in order.
- ``schema.sql``: the schema a fully migrated database must equal (checked by a test).
- ``<name>.sql``: named queries, each introduced by a ``-- name: <query_name>`` line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

Backend = Literal["sqlite", "postgres"]

_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_QUERY_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str


def _root(backend: Backend) -> resources.abc.Traversable:
    return resources.files("store").joinpath("sql", backend)


@cache
def migrations(backend: Backend) -> tuple[Migration, ...]:
    """The backend's migrations in version order; versions must be 1, 2, 3, ..."""
    found: list[Migration] = []
    for entry in _root(backend).joinpath("migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(
                Migration(version=int(match[1]), name=match[2], sql=entry.read_text("utf-8"))
            )
    found.sort(key=lambda m: m.version)
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        raise RuntimeError(f"{backend} migrations are not numbered 001, 002, ... without gaps")
    return tuple(found)


@cache
def schema(backend: Backend) -> str:
    """The reference schema of a fully migrated database."""
    return _root(backend).joinpath("schema.sql").read_text("utf-8")


@cache
def queries(backend: Backend, name: str) -> dict[str, str]:
    """Named queries from ``store/sql/<backend>/<name>.sql``."""
    text = _root(backend).joinpath(f"{name}.sql").read_text("utf-8")
    parts = _QUERY_HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    named: dict[str, str] = {}
    for index in range(1, len(parts), 2):
        query_name, body = parts[index], parts[index + 1].strip()
        if query_name in named:
            raise RuntimeError(f"query {query_name!r} is defined twice in {backend}/{name}.sql")
        named[query_name] = body
    return named
