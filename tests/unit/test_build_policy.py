"""The Dockerfile policy: what a source's Dockerfile may ask of the build, checked with
Docker's own parser before anything reaches the engine."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from jobrunner.build_policy import (
    check_build_context,
    check_dockerfile,
    image_allowed,
    normalise_image,
)
from jobrunner.errors import SourceRejected

ANY = ("*",)


def refused(text: str, *, allowed: tuple[str, ...] = ANY) -> str:
    with pytest.raises(SourceRejected) as caught:
        check_dockerfile(text, allowed_images=allowed)
    return str(caught.value)


def test_a_plain_dockerfile_passes_and_names_its_base_image() -> None:
    plan = check_dockerfile(
        'FROM busybox\nCOPY . /app\nRUN echo hi\nCMD ["/app/run"]\n', allowed_images=ANY
    )
    assert plan.images == ("busybox:latest",)
    assert plan.stages == 1


@pytest.mark.parametrize(
    "source",
    [
        "http://127.0.0.1:18699/secret.txt",
        "https://example.com/x.tar.gz",
        "HTTP://169.254.169.254/latest/meta-data",
        "git@github.com:owner/repo.git",
        "https://github.com/owner/repo.git#main",
        "git://example.com/repo",
    ],
)
def test_add_of_a_url_or_git_reference_is_refused_naming_the_line(source: str) -> None:
    message = refused(f"FROM busybox\nRUN true\nADD {source} /x\n")
    assert "line 3" in message
    assert "ADD" in message
    assert source in message


def test_add_in_json_form_and_in_an_onbuild_trigger_is_checked_too() -> None:
    assert "line 2" in refused('FROM busybox\nADD ["http://127.0.0.1:1/", "/x"]\n')
    assert "line 2" in refused("FROM busybox\nONBUILD ADD http://127.0.0.1:1/ /x\n")


def test_add_and_copy_of_local_files_are_fine() -> None:
    check_dockerfile(
        "FROM busybox\nADD app.tar /app\nCOPY --chown=1:1 a b /c/\n", allowed_images=ANY
    )


def test_an_image_outside_the_allowlist_is_refused_before_the_build() -> None:
    allowed = ("busybox:*", "registry.example/base/*")
    check_dockerfile("FROM busybox:1.36\n", allowed_images=allowed)
    check_dockerfile("FROM registry.example/base/python:3.11\n", allowed_images=allowed)
    message = refused("FROM alpine:3\n", allowed=allowed)
    assert "line 1" in message
    assert "alpine:3" in message
    assert "WORKER_JOB_BASE_IMAGES" in message


@pytest.mark.parametrize(
    "reference",
    ["abc123def456", "sha256:" + "a" * 64, "busybox@sha256:" + "b" * 64, "0123456789ab"],
)
def test_an_image_id_or_digest_is_never_allowed_by_a_name_pattern(reference: str) -> None:
    assert "not allowed" in refused(f"FROM busybox\nCOPY --from={reference} /x /y\n")
    assert "not allowed" in refused(f"FROM {reference}\n")


def test_an_id_is_allowed_only_by_a_pattern_that_names_it() -> None:
    digest = "sha256:" + "c" * 64
    check_dockerfile(f"FROM {digest}\n", allowed_images=("sha256:c*",))


def test_copy_from_an_earlier_stage_by_name_or_index_is_fine() -> None:
    plan = check_dockerfile(
        "FROM busybox AS Build\nRUN echo x > /x\nFROM busybox\n"
        "COPY --from=build /x /x\nCOPY --from=0 /x /y\n",
        allowed_images=ANY,
    )
    assert plan.images == ("busybox:latest",)
    assert plan.stages == 2


def test_copy_from_a_later_stage_index_is_an_image_reference() -> None:
    assert "not allowed" in refused("FROM busybox\nCOPY --from=1 /x /y\n", allowed=("busybox:*",))


def test_run_mount_from_an_image_is_checked_like_copy_from() -> None:
    text = "FROM busybox\nRUN --mount=type=bind,from=otherscope/secret:1,target=/m cat /m/x\n"
    message = refused(text, allowed=("busybox:*",))
    assert "line 2" in message
    assert "otherscope/secret:1" in message


@pytest.mark.parametrize(
    ("flag", "word"),
    [
        ("--network=host", "--network"),
        ("--security=insecure", "--security"),
        ("--mount=type=ssh", "ssh"),
        ("--mount=type=secret,id=x", "secret"),
    ],
)
def test_buildkit_escapes_from_the_sandbox_are_refused(flag: str, word: str) -> None:
    assert word in refused(f"FROM busybox\nRUN {flag} true\n")


def test_a_syntax_directive_is_refused_but_escape_is_fine() -> None:
    assert "syntax" in refused("# syntax=docker/dockerfile:1\nFROM busybox\n")
    assert "check" in refused("# check=skip=all\nFROM busybox\n")
    # Docker's parser drops a byte order mark before it reads the directives.
    assert "syntax" in refused("\ufeff# syntax=docker/dockerfile:1\nFROM busybox\n")
    assert "syntax" in refused("#  SYNTAX = docker/dockerfile:1\nFROM busybox\n")
    check_dockerfile("# escape=`\nFROM busybox\n", allowed_images=ANY)
    # After the first other line, "# syntax=" is only a comment.
    check_dockerfile(
        "# a comment\n# syntax=docker/dockerfile:1\nFROM busybox\n", allowed_images=ANY
    )


def test_a_base_named_by_a_build_argument_is_expanded_from_its_default() -> None:
    plan = check_dockerfile("ARG BASE=busybox:1.36\nFROM ${BASE}\n", allowed_images=("busybox:*",))
    assert plan.images == ("busybox:1.36",)
    assert "not allowed" in refused("ARG BASE=alpine:3\nFROM $BASE\n", allowed=("busybox:*",))


def test_a_base_that_cannot_be_resolved_is_refused() -> None:
    assert "$BASE" in refused("ARG BASE\nFROM $BASE\n")
    assert "$OTHER" in refused("FROM busybox\nARG OTHER=busybox\nFROM $OTHER\n")


def test_no_from_or_an_instruction_before_it_is_refused() -> None:
    assert "no instructions" in refused("# nothing\n")
    assert "no FROM" in refused("ARG X=1\n")
    assert "before the first FROM" in refused("RUN true\nFROM busybox\n")


def test_scratch_is_always_allowed() -> None:
    plan = check_dockerfile("FROM scratch\nCOPY x /x\n", allowed_images=("busybox:*",))
    assert plan.images == ()


def test_a_huge_or_binary_dockerfile_is_refused() -> None:
    assert "NUL" in refused("FROM busybox\n\x00\n")
    assert "larger than" in refused("FROM busybox\n" + "# x\n" * 400_000)


@pytest.mark.parametrize(
    ("reference", "normalised"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1", "busybox:1"),
        ("docker.io/library/busybox:1", "busybox:1"),
        ("docker.io/owner/app", "owner/app:latest"),
        ("registry.example:5000/base/py", "registry.example:5000/base/py:latest"),
        ("registry.example:5000/base/py:3", "registry.example:5000/base/py:3"),
    ],
)
def test_image_names_are_normalised_as_the_engine_tags_them(
    reference: str, normalised: str
) -> None:
    assert normalise_image(reference) == normalised


def test_patterns_are_normalised_like_image_names() -> None:
    assert image_allowed("busybox:latest", ("busybox",))
    assert image_allowed("busybox:1", ("docker.io/library/busybox:*",))
    assert not image_allowed("busybox:1", ("busybox",))
    assert not image_allowed("evil/busybox:1", ("busybox:*",))


def test_the_dockerfile_of_a_build_context_is_read_and_checked(tmp_path: Path) -> None:
    context = tmp_path / "context.tar"
    with tarfile.open(context, "w") as tar:
        for name, data in (
            ("Dockerfile", b"FROM busybox\nADD http://127.0.0.1:1/x /x\n"),
            ("ok/Dockerfile", b"FROM busybox:1.36\nCOPY . /\n"),
            ("latin1/Dockerfile", "FROM busybox\n# caf\xe9\n".encode("latin-1")),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(
        SourceRejected, match=r"Dockerfile line 2: ADD of 'http://127\.0\.0\.1:1/x'"
    ):
        check_build_context(context, "Dockerfile", allowed_images=ANY)
    plan = check_build_context(context, "ok/Dockerfile", allowed_images=ANY)
    assert plan.images == ("busybox:1.36",)
    with pytest.raises(SourceRejected, match="not UTF-8"):
        check_build_context(context, "latin1/Dockerfile", allowed_images=ANY)
    with pytest.raises(SourceRejected, match="no regular file 'missing'"):
        check_build_context(context, "missing", allowed_images=ANY)
