"""Bad input is refused with one clear line on stderr, a non-zero status, and nothing written."""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import Longshore

only_embedded = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""Input is checked before the store is touched, so the embedded store is enough here."""


def assert_refused(proc, *expected: str) -> str:
    """A clean refusal: non-zero status, one line on stderr naming the problem, no traceback."""
    stderr = proc.stderr.strip()
    assert proc.returncode != 0, f"accepted: stdout={proc.stdout!r} stderr={stderr!r}"
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    for text in expected:
        assert text in lines[0], f"{text!r} is not in the error {lines[0]!r}"
    return lines[0]


def assert_no_task_written(longshore: Longshore) -> None:
    assert longshore.json("tasks", "list")["total"] == 0
    stats = longshore.stats()
    assert stats["ready"] == stats["scheduled"] == stats["running"] == stats["dead"] == 0


@only_embedded
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["no.such.handler"], ["unknown handler", "no.such.handler"], id="handler"),
        pytest.param(
            ["builtin.noop", "--payload", "{not json"], ["--payload", "JSON"], id="not-json"
        ),
        pytest.param(
            ["builtin.noop", "--payload", "[1, 2]"], ["--payload", "JSON object"], id="array"
        ),
        pytest.param(
            ["builtin.noop", "--max-attempts", "-3"], ["--max-attempts", "-3"], id="max-attempts"
        ),
        pytest.param(
            ["builtin.noop", "--key", "k", "--key-mode", "sometimes"],
            ["key mode", "sometimes"],
            id="key-mode",
        ),
        pytest.param(["builtin.noop", "--run-at", "next tuesday"], ["--run-at"], id="run-at"),
        pytest.param(
            ["builtin.noop", "--retry", "eventually"], ["retry", "eventually"], id="retry"
        ),
        pytest.param(
            ["builtin.sleep", "--payload", '{"seconds": "ten"}'], ["seconds"], id="sleep-payload"
        ),
        pytest.param(["builtin.noop", "--count", "0"], ["--count"], id="count"),
    ],
)
def test_enqueue_refuses_bad_input_and_writes_nothing(
    longshore: Longshore, args: list[str], expected: list[str]
):
    assert_refused(longshore.run("tasks", "enqueue", *args), *expected)
    assert_no_task_written(longshore)


@only_embedded
def test_an_unreachable_database_is_a_clear_error_that_never_shows_the_password(
    longshore: Longshore,
):
    proc = longshore.run(
        "tasks", "enqueue", "builtin.noop", "--database-url", "postgresql://u:secret@127.0.0.1:1/x"
    )
    line = assert_refused(proc, "127.0.0.1")
    assert "secret" not in proc.stdout + proc.stderr
    assert "PostgreSQL" in line or "postgres" in line.lower()
    assert_no_task_written(longshore)


@only_embedded
def test_a_bad_environment_setting_is_an_error_naming_the_variable(longshore: Longshore):
    proc = longshore.run("tasks", "enqueue", "builtin.noop", env={"WORKER_CONCURRENCY": "lots"})
    assert_refused(proc, "WORKER_CONCURRENCY", "lots")
    assert_no_task_written(longshore)


@only_embedded
def test_a_worker_with_a_bad_environment_setting_refuses_to_start(longshore: Longshore):
    proc = longshore.run("worker", "--drain", env={"WORKER_LEASE_SECONDS": "0"}, timeout=30)
    assert_refused(proc, "WORKER_LEASE_SECONDS")


@only_embedded
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["nosuch"], "No such command 'nosuch'", id="command"),
        pytest.param(["runs", "nosuch"], "No such command 'nosuch'", id="subcommand"),
        pytest.param(["tasks", "list", "--bogus"], "No such option: --bogus", id="option"),
        pytest.param(["tasks", "enqueue"], "Missing argument", id="missing-argument"),
        pytest.param(["worker", "--concurrency", "0"], "--concurrency", id="bad-value"),
    ],
)
def test_a_mistyped_command_prints_its_usage_and_exits_2_without_a_traceback(
    longshore: Longshore, args: list[str], expected: str
):
    proc = longshore.run(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.stderr.startswith("Usage: longshore"), proc.stderr
    assert expected in proc.stderr


@only_embedded
@pytest.mark.parametrize("args", [[], ["serve"], ["worker"], ["tasks"], ["runs", "artifacts"]])
def test_help_is_plain_text(longshore: Longshore, args: list[str]):
    text = longshore.ok(*args, "--help")
    assert text.startswith("Usage: longshore"), text
    assert "``" not in text
    assert not any(ch in text for ch in "╭│╰─"), "help is drawn in boxes"
