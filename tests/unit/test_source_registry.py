"""Source types are found by name, and the admin API's flat source fields are exactly the
fields the registered source types declare."""

from __future__ import annotations

import pytest

from admin.schemas_jobs import JobBody, JobRequest
from jobrunner.errors import InvalidDefinition, UnknownSource
from jobrunner.sources import registry


def test_every_source_type_is_found_by_its_name():
    assert registry.names() == ("git_tag", "tarball_url", "tarball_path")
    assert [registry.get(name).name for name in registry.names()] == list(registry.names())


def test_an_unknown_name_is_a_clear_error_about_the_source_field():
    with pytest.raises(UnknownSource) as caught:
        registry.get("oci_image")
    assert isinstance(caught.value, InvalidDefinition)
    assert isinstance(caught.value, LookupError)
    assert str(caught.value) == (
        "source: must be one of git_tag, tarball_url, tarball_path, got 'oci_image'"
    )


@pytest.mark.parametrize("schema", [JobRequest, JobBody])
def test_the_admin_api_has_a_field_for_each_declared_source_field(schema):
    aliases = {field.alias for field in schema.model_fields.values()}
    assert set(registry.api_names().values()) <= aliases


def test_api_fields_map_to_source_fields_and_back():
    body = {"source": "git_tag", "repo": "https://git.example.com/a.git", "tag": "v1"}
    fields = registry.from_api({**body, "tarballUrl": None, "path": "sub"})
    assert fields == {"repo": "https://git.example.com/a.git", "tag": "v1"}
    assert registry.to_api(fields) == {
        "repo": "https://git.example.com/a.git",
        "tag": "v1",
        "tarballUrl": None,
        "tarballSha256": None,
        "tarballPath": None,
    }


@pytest.mark.parametrize(
    ("source", "fields", "described"),
    [
        ("git_tag", {"repo": "https://g.example/a.git", "tag": "v1"}, "https://g.example/a.git@v1"),
        (
            "tarball_url",
            {"tarball_url": "https://d.example/a.tgz", "tarball_sha256": "ab" * 32},
            "https://d.example/a.tgz sha256:abababababab",
        ),
        ("tarball_path", {"tarball_path": "team/a.tgz"}, "team/a.tgz"),
    ],
)
def test_each_source_type_describes_what_it_builds(source, fields, described):
    assert registry.get(source).describe(fields) == described
