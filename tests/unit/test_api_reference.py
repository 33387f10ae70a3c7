"""docs/api-reference.md is generated from the OpenAPI document and must stay current."""

from __future__ import annotations

import re
from pathlib import Path

from admin.apidoc import render, route_facts

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "api-reference.md"


def test_the_committed_api_reference_matches_the_code() -> None:
    assert REFERENCE.read_text() == render(), (
        "docs/api-reference.md is stale: run `python -m admin.apidoc > docs/api-reference.md`"
    )


def test_every_mutation_names_its_role_and_audit_action() -> None:
    facts = route_facts()
    mutations = {
        key: found
        for key, found in facts.items()
        if key[0] in ("post", "put", "delete") and not found.get("readOnly")
    }
    assert mutations
    for (method, path), found in mutations.items():
        assert found.get("action"), f"{method.upper()} {path} is not audited"
        assert found.get("role") in ("operator", "admin"), f"{method.upper()} {path}"
    reads = {key: found for key, found in facts.items() if key[0] == "get" or found.get("readOnly")}
    assert all("action" not in found for found in reads.values()), reads
    assert all(found.get("role") == "viewer" for found in reads.values()), reads


def test_every_route_is_in_the_reference() -> None:
    """The reference is rendered from the app with every router mounted: a router the
    generator's app leaves out (an optional service not given) would vanish from it."""
    text = REFERENCE.read_text()
    converter = re.compile(r"{(\w+):\w+}")  # {name:path} is {name} in the document
    routes = [method.upper() + " " + converter.sub(r"{\1}", path) for method, path in route_facts()]
    missing = [route for route in routes if f"### `{route}`" not in text]
    assert missing == []
