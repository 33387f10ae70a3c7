"""Git source rules that need no git and no network: tag names, repository URLs, the
environment and options git is run with, reading ``ls-remote`` and git's errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from jobrunner.config import RunnerConfig
from jobrunner.errors import FetchFailed, InvalidDefinition, NotAllowed, SourceRejected
from jobrunner.sources.git.environment import curl_resolve_entry, git_config_args, git_env
from jobrunner.sources.git.names import check_repo_url, check_tag, repo_allowed
from jobrunner.sources.git.process import classify_git_error, scrub
from jobrunner.sources.git.refs import parse_ls_remote, pick_commit

HOME = Path("/run/x/home")
COMMIT = "2bffe17cd0ec976a7756e1e00c6b304754bdbb0c"
TAG_OBJECT = "c8390220856db478a91dd88176c638bc0dad2361"
OTHER = "0d7411b09f83b069998bc974126bcc02c3656505"


def config(**kwargs: object) -> RunnerConfig:
    values: dict[str, object] = {
        "work_dir": Path("/nonexistent"),
        "repo_allowlist": ("https://git.example.com/team/",),
    }
    values.update(kwargs)
    return RunnerConfig(**values)  # type: ignore[arg-type]


# --- tag names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    ["v1", "v1.2.3", "1.0", "release/2024-01", "v1.0+build.5", "v1_rc", "a" * 128, "V"],
)
def test_ordinary_tags_are_accepted(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "-u",
        "--upload-pack=touch /tmp/pwned",
        "-uevil",
        ".hidden",
        "_v1",
        "/v1",
        "../x",
        "a..b",
        "a/../b",
        "a//b",
        "a/.b",
        "v1/",
        "v1.",
        "v1.lock",
        "a/b.lock/c",
        "v1@{0}",
        "@",
        "v1 ",
        " v1",
        "v 1",
        "v1\t",
        "v1\n",
        "v1\x00",
        "v1\x7f",
        "v1~1",
        "v1^",
        "v1^{}",
        "v1:x",
        "v1?",
        "v*",
        "v[1]",
        "a\\b",
        "vé",
        "a" * 129,
    ],
)
def test_unsafe_tags_are_refused(tag: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        check_tag(tag)
    assert caught.value.field == "tag"


def test_a_non_string_tag_is_refused() -> None:
    with pytest.raises(InvalidDefinition):
        check_tag(None)  # type: ignore[arg-type]


# --- repository URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowlist", "allowed"),
    [
        ("https://git.example.com/team/app.git", ["https://git.example.com/team/"], True),
        ("https://git.example.com/team/app.git", ["https://git.example.com/team/app.git"], True),
        ("https://git.example.com/team/app.git", ["*"], True),
        ("https://git.example.com/team/app.git", [" https://git.example.com/team/ "], True),
        ("https://git.example.com/team/", ["https://git.example.com/team/"], True),
        ("https://git.example.com/teamx/app.git", ["https://git.example.com/team"], False),
        ("https://git.example.com/team/app.git", ["https://git.example.com/team"], False),
        ("https://git.example.com/other/app.git", ["https://git.example.com/team/"], False),
        ("https://git.example.com.evil.net/team/x", ["https://git.example.com"], False),
        ("https://git.example.com/team/app.git", [], False),
    ],
)
def test_repositories_match_the_allowlist(url: str, allowlist: list[str], allowed: bool) -> None:
    assert repo_allowed(url, allowlist) is allowed


def test_an_allowlisted_https_repository_passes() -> None:
    url = check_repo_url("https://git.example.com/team/app.git", config())
    assert (url.hostname, url.port, url.path) == ("git.example.com", None, "/team/app.git")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "required"),
        ("http://git.example.com/team/app.git", "plain http is not allowed"),
        ("file:///srv/team/app.git", "scheme 'file'"),
        ("ext::sh -c touch% /tmp/pwned", "spaces"),
        ("ext::sh", "scheme 'ext'"),
        ("ssh://git.example.com/team/app.git", "scheme 'ssh'"),
        ("git@git.example.com:team/app.git", "scheme"),
        ("/srv/team/app.git", "scheme ''"),
        ("-uevil", "scheme ''"),
        ("https::https://git.example.com/team/app.git", "absolute https:// URL"),
        ("https:git.example.com/team/app.git", "absolute https:// URL"),
        ("https://user:pw@git.example.com/team/app.git", "credentials"),
        ("https://token@git.example.com/team/app.git", "credentials"),
        ("https:///team/app.git", "no host"),
        ("https://git.example.com/team/app.git?x=1", "query"),
        ("https://git.example.com/team/app.git#frag", "query or fragment"),
        ("https://git.example.com/team/../other/app.git", "'..'"),
        ("https://git.example.com/team/./app.git", "'.'"),
        ("https://git.example.com/team/%2E%2E/other/app.git", "encoded"),
        ("https://git.example.com/team%2fapp.git", "encoded"),
        ("https://git.example.com/team/app\\x.git", "spaces"),
        ("https://git.example.com/team/app.git\n", "control"),
        ("https://git.example.com:99999/team/app.git", "not a valid URL"),
        ("https://git.example.com/other/app.git", "not in the repository allowlist"),
        ("https://git.example.com/team/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_unsafe_repositories_are_refused(url: str, message: str) -> None:
    with pytest.raises(NotAllowed, match=message):
        check_repo_url(url, config())


def test_http_only_when_allowed() -> None:
    cfg = config(allow_http=True, repo_allowlist=("*",))
    assert check_repo_url("http://git.example.com/a.git", cfg).scheme == "http"


# --- environment and options ---------------------------------------------------------------


def test_the_environment_is_built_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GIT_SSL_NO_VERIFY",
        "GIT_DIR",
        "GIT_CONFIG_PARAMETERS",
        "https_proxy",
        "GIT_SSH_COMMAND",
        "GIT_TRACE",
        "SSL_CERT_FILE",
    ):
        monkeypatch.setenv(name, "1")
    env = git_env(HOME)
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/run/x/home",
        "XDG_CONFIG_HOME": "/run/x/home/.config",
        "LC_ALL": "C",
        "LANG": "C",
        "LANGUAGE": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": "https",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_NO_LAZY_FETCH": "1",
    }


def test_the_environment_allows_http_and_names_the_repository_only_when_asked() -> None:
    env = git_env(HOME, allow_http=True, git_dir=Path("/r.git"), ceiling=Path("/run"))
    assert env["GIT_ALLOW_PROTOCOL"] == "https:http"
    assert env["GIT_DIR"] == "/r.git"
    assert env["GIT_CEILING_DIRECTORIES"] == "/run"


def settings(args: list[str]) -> dict[str, str]:
    assert args[0::2] == ["-c"] * (len(args) // 2)
    return dict(item.split("=", 1) for item in args[1::2])


def test_the_options_harden_git() -> None:
    found = settings(git_config_args())
    assert found["protocol.allow"] == "never"
    assert found["protocol.https.allow"] == "always"
    assert found["protocol.http.allow"] == "never"
    assert found["protocol.file.allow"] == "never"
    assert found["protocol.ext.allow"] == "never"
    assert found["http.followRedirects"] == "false"
    assert found["http.sslVerify"] == "true"
    assert found["credential.helper"] == ""
    assert found["core.hooksPath"] == "/dev/null"
    assert found["fetch.recurseSubmodules"] == "false"
    assert found["transfer.fsckObjects"] == "true"
    assert found["protocol.version"] == "2"
    assert "http.sslCAInfo" not in found
    assert "http.sslCAPath" not in found
    assert "http.curloptResolve" not in found


def test_the_options_carry_trust_and_pinning() -> None:
    found = settings(
        git_config_args(
            allow_http=True,
            ca_bundle=Path("/w/ca.pem"),
            ca_dir=Path("/w/none"),
            resolve="git.example.com:443:1.2.3.4",
        )
    )
    assert found["protocol.http.allow"] == "always"
    assert found["http.sslCAInfo"] == "/w/ca.pem"
    assert found["http.sslCAPath"] == "/w/none"
    assert found["http.curloptResolve"] == "git.example.com:443:1.2.3.4"


def test_names_are_pinned_to_their_checked_addresses() -> None:
    addresses = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:2800::1")]
    assert (
        curl_resolve_entry("git.example.com", 443, addresses)
        == "git.example.com:443:93.184.216.34,[2606:2800::1]"
    )
    assert curl_resolve_entry("93.184.216.34", 443, addresses[:1]) is None
    assert curl_resolve_entry("::1", 443, [ipaddress.ip_address("::1")]) is None


# --- reading git's answers -----------------------------------------------------------------


def test_ls_remote_output_is_parsed_strictly() -> None:
    output = (
        f"{TAG_OBJECT}\trefs/tags/v1\n{COMMIT}\trefs/tags/v1^{{}}\n"
        f"not-a-sha\trefs/tags/bad\n{OTHER}\trefs/heads/v1\n\n"
    ).encode()
    assert parse_ls_remote(output) == {
        "refs/tags/v1": TAG_OBJECT,
        "refs/tags/v1^{}": COMMIT,
        "refs/heads/v1": OTHER,
    }


def test_the_peeled_commit_of_an_annotated_tag_is_used() -> None:
    refs = {"refs/tags/v1": TAG_OBJECT, "refs/tags/v1^{}": COMMIT}
    assert pick_commit(refs, "v1", "r") == COMMIT


def test_a_lightweight_tag_is_its_own_commit_and_a_branch_never_counts() -> None:
    assert pick_commit({"refs/tags/v1": COMMIT, "refs/heads/v1": OTHER}, "v1", "r") == COMMIT
    with pytest.raises(SourceRejected, match="'v1' is a branch, and only tags can be used"):
        pick_commit({"refs/heads/v1": OTHER}, "v1", "r")
    with pytest.raises(SourceRejected, match=r"has no tag 'v1'$"):
        pick_commit({"refs/tags/x/refs/tags/v1": OTHER}, "v1", "r")


def test_credentials_and_control_characters_are_scrubbed() -> None:
    text = "fatal: unable to access 'https://user:secret@h/r.git/':\x1b[31m boom\x00"
    cleaned = scrub(text)
    assert "secret" not in cleaned
    assert "user" not in cleaned
    assert "https://***@h/r.git/" in cleaned
    assert "\x1b" not in cleaned
    assert "\x00" not in cleaned
    long = scrub("x" * 5000 + "the reason", limit=100)
    assert len(long) == 103
    assert long.endswith("the reason")


@pytest.mark.parametrize(
    ("stderr", "error", "message"),
    [
        (
            "fatal: unable to access 'https://h/r.git/': server certificate verification "
            "failed. CAfile: none CRLfile: none",
            FetchFailed,
            "WORKER_JOB_CA_FILE",
        ),
        (
            "fatal: unable to access 'https://h/r.git/': gnutls_handshake() failed",
            FetchFailed,
            "TLS failed",
        ),
        (
            "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 302",
            NotAllowed,
            "redirects are not followed",
        ),
        ("fatal: repository 'https://h/tls-tools.git/' not found", SourceRejected, "not found"),
        (
            "fatal: could not read Username for 'https://h': terminal prompts disabled",
            SourceRejected,
            "credentials",
        ),
        (
            "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 403",
            SourceRejected,
            "credentials",
        ),
        (
            "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 410",
            SourceRejected,
            "HTTP 410",
        ),
        (
            "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 503",
            FetchFailed,
            "503",
        ),
        (
            "fatal: unable to access 'https://h/r.git/': Failed to connect to h port 443",
            FetchFailed,
            "Failed to connect",
        ),
        ("fatal: transport 'file' not allowed", NotAllowed, "not allowed"),
        ("", FetchFailed, "exit status 128"),
    ],
)
def test_git_failures_are_classified(stderr: str, error: type[Exception], message: str) -> None:
    found = classify_git_error(stderr, 128, "ls-remote", "https://h/r.git", "h")
    assert type(found) is error
    assert message in str(found)
    assert "git ls-remote of https://h/r.git" in str(found)
