"""Job definitions are checked against the runner's settings before they are saved or run:
each broken rule is refused with a message naming the field as the API spells it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobrunner.config import JobCeilings, RunnerConfig
from jobrunner.definition import validate_definition
from jobrunner.errors import InvalidDefinition
from store.jobs.models import JobDefinition, OutputLimitAction, Resources

SHA = "ab" * 32

CONFIG = RunnerConfig(
    work_dir=Path("/tmp/longshore-test"),
    repo_allowlist=("https://git.example.com/team/", "https://other.example.org/solo.git"),
    tarball_allowlist=("downloads.example.com",),
    tarball_dir=Path("/srv/tarballs"),
    network_allowlist=("etl-net",),
    output_bytes=1_000_000,
    # As high as the rules allow: the server ceilings have tests of their own.
    ceilings=JobCeilings(max_timeout_seconds=7 * 24 * 3600),
)


SOURCE_FIELDS = ("repo", "tag", "tarball_url", "tarball_path", "tarball_sha256")


def job(fields: dict[str, object], overrides: dict[str, object]) -> JobDefinition:
    """A definition of ``fields`` and ``overrides``, the source's fields among them."""
    fields.update(overrides)
    source_fields = {key: fields.pop(key) for key in SOURCE_FIELDS if key in fields}
    return JobDefinition(source_fields=source_fields, **fields)  # type: ignore[arg-type]


def git_job(**overrides: object) -> JobDefinition:
    fields: dict[str, object] = {
        "name": "nightly-report",
        "source": "git_tag",
        "repo": "https://git.example.com/team/report.git",
        "tag": "v1.2.3",
    }
    return job(fields, overrides)


def url_job(**overrides: object) -> JobDefinition:
    fields: dict[str, object] = {
        "name": "etl",
        "source": "tarball_url",
        "tarball_url": "https://downloads.example.com/etl-2.0.tar.gz",
        "tarball_sha256": SHA,
    }
    return job(fields, overrides)


def path_job(**overrides: object) -> JobDefinition:
    fields: dict[str, object] = {
        "name": "local",
        "source": "tarball_path",
        "tarball_path": "team/job.tar.gz",
    }
    return job(fields, overrides)


def refused(defn: JobDefinition, field: str, config: RunnerConfig = CONFIG) -> str:
    """Assert ``defn`` is refused for ``field`` and return the message."""
    with pytest.raises(InvalidDefinition) as caught:
        validate_definition(defn, config)
    assert caught.value.field == field, str(caught.value)
    assert str(caught.value).startswith(f"{field}: ")
    return str(caught.value)


# --- what passes ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [git_job, url_job, path_job], ids=["git", "url", "path"])
def test_a_plain_definition_of_each_source_passes_unchanged(make):
    defn = make()
    assert validate_definition(defn, CONFIG) == defn


def test_a_full_definition_passes_and_is_normalised():
    defn = url_job(
        description="loads the warehouse",
        tarball_sha256=SHA.upper(),
        path="./services//etl",
        dockerfile="docker/./Dockerfile.prod",
        command=["python", "-m", "etl", ""],
        env=["MODE=full", "EMPTY=", "URL=https://x/?a=b=c"],
        queue="bulk:etl",
        retries=100,
        timeout_seconds=7 * 24 * 3600,
        resources=Resources(memory_mb=2048, cpus=2, pids_limit=512),
        network="etl-net",
        artifacts_path="/out//artifacts/",
        output_bytes=1_000_000,
        on_output_limit="fail",
        revision=4,
    )

    checked = validate_definition(defn, CONFIG)

    assert checked.source_fields.get("tarball_sha256") == SHA
    assert checked.path == "services/etl"
    assert checked.dockerfile == "docker/Dockerfile.prod"
    assert checked.command == ("python", "-m", "etl", "")
    assert checked.env == ("MODE=full", "EMPTY=", "URL=https://x/?a=b=c")
    assert checked.artifacts_path == "/out/artifacts"
    assert checked.resources == Resources(memory_mb=2048, cpus=2.0, pids_limit=512)
    assert isinstance(checked.resources.cpus, float)
    assert checked.on_output_limit is OutputLimitAction.FAIL
    assert checked.revision == 4


def test_empty_strings_from_seed_clients_count_as_unset():
    defn = git_job(tarball_url="", tarball_path="", tarball_sha256="  ", path="", dockerfile="")

    checked = validate_definition(defn, CONFIG)

    assert checked.source_fields == {"repo": defn.source_fields["repo"], "tag": "v1.2.3"}
    assert checked.path is None
    assert checked.dockerfile == "Dockerfile"


def test_the_context_root_may_be_spelled_dot():
    assert validate_definition(git_job(path="."), CONFIG).path is None


def test_checking_twice_changes_nothing_more():
    once = validate_definition(url_job(tarball_sha256=SHA.upper(), path="./a"), CONFIG)
    assert validate_definition(once, CONFIG) == once


# --- name, description, source ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "Upper", "-x", ".x", "_x", "a b", "a/b", "x" * 64, "ok\n", "é", 5]
)
def test_names_outside_the_pattern_are_refused(name):
    assert "a-z" in refused(git_job(name=name), "name")


@pytest.mark.parametrize("name", ["a", "0", "a.b_c-d", "x" * 63])
def test_names_inside_the_pattern_pass(name):
    assert validate_definition(git_job(name=name), CONFIG).name == name


def test_a_long_description_is_refused():
    refused(git_job(description="x" * 4097), "description")
    refused(git_job(description="nul\0"), "description")


def test_an_unknown_source_is_refused():
    message = refused(git_job(source="svn"), "source")
    assert "git_tag, tarball_url, tarball_path" in message


@pytest.mark.parametrize(
    ("make", "missing", "field"),
    [
        (git_job, "repo", "repo"),
        (git_job, "tag", "tag"),
        (url_job, "tarball_url", "tarballUrl"),
        (url_job, "tarball_sha256", "tarballSha256"),
        (path_job, "tarball_path", "tarballPath"),
    ],
)
def test_each_source_requires_its_fields(make, missing, field):
    message = refused(make(**{missing: None}), field)
    assert "required" in message


def test_a_tarball_path_needs_no_sha256():
    assert validate_definition(path_job(), CONFIG).source_fields.get("tarball_sha256") is None
    assert (
        validate_definition(path_job(tarball_sha256=SHA), CONFIG).source_fields.get(
            "tarball_sha256"
        )
        == SHA
    )


@pytest.mark.parametrize(
    ("make", "foreign", "field"),
    [
        (git_job, "tarball_url", "tarballUrl"),
        (git_job, "tarball_path", "tarballPath"),
        (git_job, "tarball_sha256", "tarballSha256"),
        (url_job, "repo", "repo"),
        (url_job, "tag", "tag"),
        (url_job, "tarball_path", "tarballPath"),
        (path_job, "repo", "repo"),
        (path_job, "tarball_url", "tarballUrl"),
    ],
)
def test_fields_of_another_source_are_refused(make, foreign, field):
    value = SHA if foreign == "tarball_sha256" else "https://downloads.example.com/x.tgz"
    message = refused(make(**{foreign: value}), field)
    assert "not used by source" in message


def test_source_fields_must_be_strings():
    refused(git_job(tag=123), "tag")


# --- git --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "repo",
    [
        "https://git.example.com/team/report.git",
        "https://git.example.com/team/sub/group/x",
        "https://other.example.org/solo.git",
    ],
)
def test_allowlisted_repositories_pass(repo):
    assert validate_definition(git_job(repo=repo), CONFIG).source_fields.get("repo") == repo


@pytest.mark.parametrize(
    "repo",
    [
        "https://git.example.com/other/report.git",
        "https://git.example.com/team",
        "https://git.example.com/teamx/y.git",
        "https://other.example.org/solo.git.evil",
        "https://git.example.com.evil.net/team/x",
    ],
)
def test_repositories_outside_the_allowlist_are_refused(repo):
    assert "WORKER_JOB_REPO_ALLOWLIST" in refused(git_job(repo=repo), "repo")


def test_a_star_allows_any_https_repository():
    config = dataclasses.replace(CONFIG, repo_allowlist=("*",))
    repo = "https://anything.example.net/x.git"
    assert validate_definition(git_job(repo=repo), config).source_fields.get("repo") == repo


def test_an_empty_allowlist_allows_no_repository():
    config = dataclasses.replace(CONFIG, repo_allowlist=())
    refused(git_job(), "repo", config)


@pytest.mark.parametrize(
    "repo",
    [
        "http://git.example.com/team/report.git",
        "ssh://git@git.example.com/team/report.git",
        "git://git.example.com/team/report.git",
        "file:///srv/git/team/report.git",
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "git.example.com:team/report.git",
    ],
)
def test_repositories_not_over_https_are_refused(repo):
    config = dataclasses.replace(CONFIG, repo_allowlist=("*",))
    refused(git_job(repo=repo), "repo", config)


def test_plain_http_repositories_pass_only_when_allowed():
    repo = "http://git.example.com/team/report.git"
    assert "plain http" in refused(git_job(repo=repo), "repo")
    config = dataclasses.replace(CONFIG, allow_http=True, repo_allowlist=("*",))
    assert validate_definition(git_job(repo=repo), config).source_fields.get("repo") == repo


@pytest.mark.parametrize(
    "repo",
    [
        "https://user:secret@git.example.com/team/report.git",
        "https://token@git.example.com/team/report.git",
        "https://git.example.com/team/../admin/x.git",
        "https://git.example.com/team/%2e%2e/admin/x.git",
        "https://git.example.com/team/a%2Fb.git",
        "https://git.example.com/team/x.git?ref=main",
        "https://git.example.com/team/x.git#frag",
        "https://git.example.com/team/x .git",
        "https://git.example.com/team/x\\y.git",
        "https:///team/x.git",
        "https://git.example.com:99999/team/x.git",
    ],
)
def test_repository_urls_that_could_be_read_two_ways_are_refused(repo):
    config = dataclasses.replace(CONFIG, repo_allowlist=("*",))
    refused(git_job(repo=repo), "repo", config)


def test_a_repository_at_a_private_address_is_refused_unless_allowed():
    config = dataclasses.replace(CONFIG, repo_allowlist=("*",))
    repo = "https://127.0.0.1:8443/team/x.git"
    assert "not public" in refused(git_job(repo=repo), "repo", config)
    allowed = dataclasses.replace(config, allow_private_hosts=True)
    assert validate_definition(git_job(repo=repo), allowed).source_fields.get("repo") == repo


@pytest.mark.parametrize(
    "tag", ["v1.2.3", "1.0", "release/2024-01", "v1.0.0+build.5", "V_2", "a" * 128]
)
def test_ordinary_tags_pass(tag):
    assert validate_definition(git_job(tag=tag), CONFIG).source_fields.get("tag") == tag


@pytest.mark.parametrize(
    "tag",
    [
        "--upload-pack=touch /tmp/x",
        "-u",
        "-v1",
        ".hidden",
        "/abs",
        "v1..2",
        "v1/../x",
        "v1//x",
        "v1/",
        "v1.",
        "v1.lock",
        "release/x.lock/y",
        "release/.x",
        "v@{1}",
        "v1 2",
        "v1~1",
        "v1^0",
        "v1:x",
        "v1?",
        "v1*",
        "v1[",
        "v1\\x",
        "v1\n",
        "refs/heads/main\n",
        "a" * 129,
        "é",
    ],
)
def test_tags_git_could_misread_are_refused(tag):
    refused(git_job(tag=tag), "tag")


# --- tarballs ---------------------------------------------------------------------------------


def test_a_tarball_host_outside_the_allowlist_is_refused():
    defn = url_job(tarball_url="https://evil.example.net/etl.tar.gz")
    assert "WORKER_JOB_TARBALL_ALLOWLIST" in refused(defn, "tarballUrl")


def test_tarball_hosts_compare_without_case():
    url = "https://DOWNLOADS.example.com/etl.tar.gz?sig=abc"
    assert (
        validate_definition(url_job(tarball_url=url), CONFIG).source_fields.get("tarball_url")
        == url
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://downloads.example.com/etl.tar.gz",
        "ftp://downloads.example.com/etl.tar.gz",
        "file:///etc/passwd",
        "https://user:pw@downloads.example.com/etl.tar.gz",
        "https://downloads.example.com/a/../etl.tar.gz",
        "https://downloads.example.com/etl.tar.gz#x",
        "downloads.example.com/etl.tar.gz",
    ],
)
def test_tarball_urls_that_are_not_plain_https_are_refused(url):
    refused(url_job(tarball_url=url), "tarballUrl")


def test_a_tarball_at_a_private_address_is_refused():
    config = dataclasses.replace(CONFIG, tarball_allowlist=("*",))
    for url in ["https://10.0.0.5/x.tgz", "https://[::1]/x.tgz", "https://169.254.169.254/x"]:
        assert "not public" in refused(url_job(tarball_url=url), "tarballUrl", config)


@pytest.mark.parametrize(
    "sha", ["ab" * 31, "ab" * 33, "g" * 64, "sha256:" + "ab" * 32, "ab" * 31 + "a\n"]
)
def test_a_malformed_sha256_is_refused(sha):
    assert "64 hexadecimal" in refused(url_job(tarball_sha256=sha), "tarballSha256")


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../outside.tgz", "a/../../b.tgz", "a/..", "a\0b", "a\\b", "x" * 1025]
)
def test_a_tarball_path_escaping_its_root_is_refused(path):
    refused(path_job(tarball_path=path), "tarballPath")


def test_tarball_paths_need_a_tarball_directory():
    config = dataclasses.replace(CONFIG, tarball_dir=None)
    assert "WORKER_JOB_TARBALL_DIR" in refused(path_job(), "tarballPath", config)


# --- build context ----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "attr"), [("path", "path"), ("dockerfile", "dockerfile")])
@pytest.mark.parametrize("value", ["/abs", "..", "../x", "a/../../x", "a\0", "a\nb", "a\\b"])
def test_context_paths_must_stay_inside_the_context(field, attr, value):
    refused(git_job(**{attr: value}), field)


def test_a_dockerfile_must_name_a_file():
    refused(git_job(dockerfile="."), "dockerfile")


# --- command and env --------------------------------------------------------------------------


def test_the_command_must_be_a_list_of_strings():
    refused(git_job(command="echo hi"), "command")
    refused(git_job(command=["echo", 1]), "command[1]")
    refused(git_job(command=["echo", "a\0b"]), "command[1]")
    refused(git_job(command=["x"] * 257), "command")
    refused(git_job(command=["x" * 8193]), "command[0]")


def test_an_empty_command_keeps_the_image_default():
    assert validate_definition(git_job(command=[]), CONFIG).command == ()


@pytest.mark.parametrize(
    ("env", "field", "words"),
    [
        (["HOME"], "env[0]", "bare KEY"),
        (["A=1", "PATH"], "env[1]", "bare KEY"),
        (["=value"], "env[0]", "KEY"),
        (["1A=x"], "env[0]", "KEY"),
        (["A-B=x"], "env[0]", "KEY"),
        (["A B=x"], "env[0]", "KEY"),
        (["A=1", "B=2", "A=3"], "env[2]", "twice"),
        (["A=" + "x" * 40_000], "env[0]", "at most"),
        ([5], "env[0]", "string"),
        ("A=1", "env", "list"),
    ],
)
def test_env_entries_must_be_key_equals_value(env, field, words):
    assert words in refused(git_job(env=env), field)


def test_env_values_may_hold_anything_but_nul():
    env = ("A=", "B=x=y", "C= spaced ", "D=ünï")
    assert validate_definition(git_job(env=env), CONFIG).env == env
    refused(git_job(env=["A=\0"]), "env[0]")


# --- queue, retries, timeout, resources -------------------------------------------------------


@pytest.mark.parametrize("queue", ["", "has space", "-x", "default\n", None])
def test_a_bad_queue_name_is_refused(queue):
    refused(git_job(queue=queue), "queue")


@pytest.mark.parametrize("retries", [-1, 101, True, 1.5, "2"])
def test_retries_must_be_0_to_100(retries):
    refused(git_job(retries=retries), "retries")


@pytest.mark.parametrize("timeout", [0, -5, 7 * 24 * 3600 + 1, 2.5, None])
def test_the_timeout_must_be_1s_to_7_days(timeout):
    refused(git_job(timeout_seconds=timeout), "timeoutSeconds")


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        (Resources(memory_mb=15), "resources.memoryMb"),
        (Resources(memory_mb=2**21), "resources.memoryMb"),
        (Resources(cpus=0), "resources.cpus"),
        (Resources(cpus=float("nan")), "resources.cpus"),
        (Resources(cpus=float("inf")), "resources.cpus"),
        (Resources(cpus=2000), "resources.cpus"),
        (Resources(pids_limit=0), "resources.pidsLimit"),
        (Resources(pids_limit=10**6), "resources.pidsLimit"),
        ({"memoryMb": 1}, "resources"),
    ],
)
def test_resources_must_be_within_bounds(resources, field):
    refused(git_job(resources=resources), field)


# --- network, artifacts, output ---------------------------------------------------------------


def test_no_network_is_the_default():
    assert validate_definition(git_job(), CONFIG).network == "none"
    assert validate_definition(git_job(network=""), CONFIG).network == "none"


def test_only_allowlisted_networks_pass():
    assert validate_definition(git_job(network="etl-net"), CONFIG).network == "etl-net"
    assert "WORKER_JOB_NETWORK" in refused(git_job(network="bridge"), "network")


@pytest.mark.parametrize("network", ["container:abc", "a b", "-x", "x\n"])
def test_network_modes_that_are_not_names_are_refused(network):
    refused(git_job(network=network), "network")


def test_host_networking_is_refused_even_when_allowlisted():
    config = dataclasses.replace(CONFIG, network_allowlist=("host",))
    assert "never" in refused(git_job(network="host"), "network", config)


@pytest.mark.parametrize(
    "path", ["artifacts", "./out", "/", "//", "/out/../etc", "/proc", "/sys/x", "/dev", "/a\0"]
)
def test_the_artifacts_path_must_be_an_absolute_directory_of_its_own(path):
    refused(git_job(artifacts_path=path), "artifactsPath")


def test_artifacts_paths_that_merely_start_like_system_ones_pass():
    assert validate_definition(git_job(artifacts_path="/procedures"), CONFIG).artifacts_path == (
        "/procedures"
    )


def test_the_output_cap_may_not_exceed_the_servers():
    assert validate_definition(git_job(output_bytes=None), CONFIG).output_bytes is None
    assert validate_definition(git_job(output_bytes=1), CONFIG).output_bytes == 1
    assert "1000000" in refused(git_job(output_bytes=1_000_001), "outputBytes")
    refused(git_job(output_bytes=0), "outputBytes")
    refused(git_job(output_bytes=True), "outputBytes")


def test_on_output_limit_is_truncate_or_fail():
    assert "truncate" in refused(git_job(on_output_limit="drop"), "onOutputLimit")
    refused(git_job(on_output_limit=None), "onOutputLimit")


# --- server ceilings and the run user ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "variable"),
    [
        ({"resources": Resources(memory_mb=8193)}, "resources.memoryMb", "MAX_MEMORY_MB"),
        ({"resources": Resources(cpus=4.5)}, "resources.cpus", "MAX_CPUS"),
        ({"resources": Resources(pids_limit=4097)}, "resources.pidsLimit", "MAX_PIDS"),
        ({"timeout_seconds": 86_401}, "timeoutSeconds", "MAX_TIMEOUT_SECONDS"),
    ],
)
def test_a_definition_above_the_server_ceilings_is_refused(overrides, field, variable):
    message = refused(
        git_job(**overrides), field, dataclasses.replace(CONFIG, ceilings=JobCeilings())
    )
    assert f"WORKER_JOB_{variable}" in message
    assert "ceiling" in message


def test_the_ceilings_are_the_servers_settings():
    lower = dataclasses.replace(
        CONFIG,
        ceilings=JobCeilings(max_memory_mb=256, max_cpus=0.5, max_pids=64, max_timeout_seconds=60),
    )
    refused(
        git_job(resources=Resources(memory_mb=512), timeout_seconds=60), "resources.memoryMb", lower
    )
    refused(git_job(timeout_seconds=61), "timeoutSeconds", lower)
    at_the_ceiling = git_job(
        resources=Resources(memory_mb=256, cpus=0.5, pids_limit=64), timeout_seconds=60
    )
    assert validate_definition(at_the_ceiling, lower).resources.memory_mb == 256


@pytest.mark.parametrize("user", ["0", "1000", "1000:1000", "app", "app:staff", "_svc.x-1"])
def test_a_run_user_by_number_or_name_passes(user):
    assert validate_definition(git_job(user=user), CONFIG).user == user


def test_no_run_user_means_the_runners_default():
    assert validate_definition(git_job(), CONFIG).user is None
    assert validate_definition(git_job(user=""), CONFIG).user is None


@pytest.mark.parametrize("user", ["root;id", "1000:", ":1000", "a b", "1:2:3", "-u", 5, "A"])
def test_a_run_user_docker_could_misread_is_refused(user):
    refused(git_job(user=user), "user")
