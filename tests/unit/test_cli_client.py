"""Pure parts of the API client commands: definitions files, SSE parsing, the connection
resolved from flags and settings, exit statuses."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.cli.api import ApiError, ConnectionFlags, iter_sse, resolve_connection
from service.cli.follow import output_text
from service.cli.jobs import exit_status, load_definitions
from service.settings import load_settings


def test_definitions_load_from_json_yaml_lists_and_yaml_streams(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text('{"name": "a", "source": "git_tag"}')
    assert load_definitions(one) == [{"name": "a", "source": "git_tag"}]

    many = tmp_path / "many.yaml"
    many.write_text("- name: a\n  tag: v1\n- name: b\n  tag: v2\n")
    assert [d["name"] for d in load_definitions(many)] == ["a", "b"]

    stream = tmp_path / "stream.yaml"
    stream.write_text("name: a\n---\nname: b\ncommand: [sh, -c, 'echo hi']\n")
    loaded = load_definitions(stream)
    assert loaded[1]["command"] == ["sh", "-c", "echo hi"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no job definition"),
        ("- 1\n- 2\n", "must be an object"),
        ("name: [unclosed\n", "neither JSON nor YAML"),
        ('"just a string"', "must be an object"),
    ],
)
def test_bad_definition_files_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ApiError, match=message):
        load_definitions(path)


def test_a_missing_definitions_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ApiError, match="cannot read"):
        load_definitions(tmp_path / "nope.yaml")


def test_sse_events_are_split_into_event_data_and_id() -> None:
    body = (
        b"retry: 3000\n\n"
        b": a comment\n"
        b'id: 7\nevent: output\ndata: "line one\\n"\n\n'
        b'event: heartbeat\ndata: {"ts": 1}\n\n'
        b'id: 8\nevent: end\ndata: {"status": "failed"}\ndata: more\n\n'
    )
    response = httpx.Response(200, content=body)
    events = list(iter_sse(response))
    assert events == [
        ("output", '"line one\\n"', "7"),
        ("heartbeat", '{"ts": 1}', None),
        ("end", '{"status": "failed"}\nmore', "8"),
    ]


def test_output_text_accepts_a_string_or_an_object_holding_it() -> None:
    assert output_text("abc") == "abc"
    assert output_text({"text": "abc", "runId": "r"}) == "abc"
    assert output_text({"unexpected": 1}) == ""


def test_exit_status_follows_the_run_status() -> None:
    assert [exit_status(s) for s in ("succeeded", "failed", "timed_out", "cancelled")] == [
        0,
        1,
        124,
        125,
    ]
    assert exit_status(None) == 1


def test_connection_defaults_to_the_local_listener_and_the_token_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text("s3cret\n")
    settings = load_settings({}, data_dir=data, admin_http_addr="0.0.0.0:9000")
    connection = resolve_connection(ConnectionFlags(), settings)
    assert connection.url == "http://127.0.0.1:9000"
    assert connection.token == "s3cret"
    assert connection.base == "http://127.0.0.1:9000/admin/v1"


def test_flags_win_over_settings_and_a_certificate_replaces_the_token(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path, admin_token="ops:from-env-0123456789-abcdefgh")
    assert resolve_connection(ConnectionFlags(), settings).token == "from-env-0123456789-abcdefgh"
    flags = ConnectionFlags(
        url="https://api.example:8443", cert=tmp_path / "c.pem", key=tmp_path / "k.pem"
    )
    connection = resolve_connection(flags, settings)
    assert connection.url == "https://api.example:8443"
    assert connection.token is None
    assert connection.cert == (tmp_path / "c.pem", tmp_path / "k.pem")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (ConnectionFlags(cert=Path("c.pem")), "needs its key"),
        (ConnectionFlags(url="ftp://host"), "must start with http"),
    ],
)
def test_bad_connection_flags_are_refused(
    tmp_path: Path, flags: ConnectionFlags, message: str
) -> None:
    with pytest.raises(ApiError, match=message):
        resolve_connection(flags, load_settings({}, data_dir=tmp_path))
