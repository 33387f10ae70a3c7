"""Settings come from WORKER_* variables; a bad value is an error naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from admin.config import Role
from service.addresses import parse_listen_addr
from service.errors import SettingsError
from service.settings import (
    IGNORED_SEED_VARIABLES,
    ignored_variables,
    load_settings,
)
from service.units import parse_duration


def test_defaults_are_the_embedded_store_and_documented_values():
    settings = load_settings({})
    assert settings.database_url is None
    assert settings.data_dir == Path("./longshore-data")
    assert settings.concurrency == 8
    assert settings.lease_seconds == 30.0
    assert settings.effective_heartbeat_seconds == 10.0
    assert settings.admin_default_queue == "default"


def test_values_are_read_from_worker_variables():
    settings = load_settings(
        {
            "WORKER_CONCURRENCY": "3",
            "WORKER_LEASE_SECONDS": "1m",
            "WORKER_ADMIN_QUEUE_WEIGHTS": "fast=3, bulk=1",
            "WORKER_QUEUE_CONCURRENCY": "serial=1",
            "WORKER_LOG_LEVEL": "debug",
            "OTHER_THING": "ignored",
        }
    )
    assert settings.concurrency == 3
    assert settings.lease_seconds == 60.0
    assert settings.admin_queue_weights == {"fast": 3, "bulk": 1}
    assert settings.queue_concurrency == {"serial": 1}
    assert settings.log_level == "DEBUG"


def test_flags_override_the_environment():
    settings = load_settings({"WORKER_CONCURRENCY": "3"}, concurrency=5)
    assert settings.concurrency == 5


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY"),
        ({"WORKER_CONCURRENCY": "many"}, "WORKER_CONCURRENCY"),
        ({"WORKER_LEASE_SECONDS": "5 parsecs"}, "WORKER_LEASE_SECONDS"),
        ({"WORKER_LEASE_SECONDS": "0.1"}, "WORKER_LEASE_SECONDS"),
        ({"WORKER_ADMIN_QUEUE_WEIGHTS": "a=3,b"}, "WORKER_ADMIN_QUEUE_WEIGHTS"),
        ({"WORKER_ADMIN_QUEUE_WEIGHTS": "a=0"}, "WORKER_ADMIN_QUEUE_WEIGHTS"),
        ({"WORKER_ADMIN_QUEUE_WEIGHTS": "bad name=2"}, "WORKER_ADMIN_QUEUE_WEIGHTS"),
        ({"WORKER_QUEUE_CONCURRENCY": "q=0"}, "WORKER_QUEUE_CONCURRENCY"),
        ({"WORKER_ADMIN_DEFAULT_QUEUE": "no spaces"}, "WORKER_ADMIN_DEFAULT_QUEUE"),
        ({"WORKER_LOG_LEVEL": "loud"}, "WORKER_LOG_LEVEL"),
        ({"WORKER_LOG_FORMAT": "xml"}, "WORKER_LOG_FORMAT"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(env, named):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(named + ":")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("0.5", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        ("168h", 604800.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        (" 10S ", 10.0),
    ],
)
def test_durations_accept_numbers_and_units(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "10x", "1h 30m", "-5s", "inf", "nan", "5s5"])
def test_durations_reject_anything_else(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_job_settings_reach_the_runner_config():
    from service.runtime import runner_config

    config = runner_config(
        load_settings(
            {
                "WORKER_DATA_DIR": "/srv/ls",
                "WORKER_JOB_REPO_ALLOWLIST": "https://git.example.com/team/, https://x.test/r",
                "WORKER_JOB_TARBALL_ALLOWLIST": "downloads.example.com",
                "WORKER_JOB_TARBALL_MAX_BYTES": "16MiB",
                "WORKER_JOB_TARBALL_TIMEOUT": "1m",
                "WORKER_JOB_OUTPUT_BYTES": "256KiB",
                "WORKER_JOB_NETWORK": "jobs-egress",
                "WORKER_JOB_CA_FILE": "/etc/ssl/company-ca.pem",
                "WORKER_JOB_ALLOW_PRIVATE_HOSTS": "true",
            }
        )
    )
    assert config.work_dir == Path("/srv/ls/work")
    assert config.repo_allowlist == ("https://git.example.com/team/", "https://x.test/r")
    assert config.tarball_allowlist == ("downloads.example.com",)
    assert config.tarball_max_bytes == 16 * 1024 * 1024
    assert config.tarball_timeout == 60.0
    assert config.output_bytes == 256 * 1024
    assert config.network_allowlist == ("jobs-egress",)
    assert config.ca_file == Path("/etc/ssl/company-ca.pem")
    assert config.allow_private_hosts is True


def test_sandbox_settings_reach_the_runner_config():
    from service.runtime import runner_config

    config = runner_config(
        load_settings(
            {
                "WORKER_JOB_ARCHIVE_MAX_ENTRIES": "500",
                "WORKER_JOB_ARCHIVE_MAX_FILE_BYTES": "8MiB",
                "WORKER_JOB_ARCHIVE_MAX_BYTES": "32MiB",
                "WORKER_JOB_ARTIFACTS_MAX_BYTES": "16MiB",
                "WORKER_JOB_BASE_IMAGES": "busybox:*, registry.example/base/*",
                "WORKER_JOB_PULL": "missing",
                "WORKER_JOB_PULL_TIMEOUT": "2m",
                "WORKER_JOB_MAX_MEMORY_MB": "2048",
                "WORKER_JOB_MAX_CPUS": "2.5",
                "WORKER_JOB_MAX_PIDS": "512",
                "WORKER_JOB_MAX_TIMEOUT_SECONDS": "2h",
            }
        )
    )
    limits = config.archive_limits
    assert (limits.max_entries, limits.max_file_bytes, limits.max_total_bytes) == (
        500,
        8 << 20,
        32 << 20,
    )
    assert config.artifact_limits.max_total_bytes == 16 << 20
    assert config.artifact_limits.max_file_bytes == 16 << 20
    assert config.build.base_images == ("busybox:*", "registry.example/base/*")
    assert config.build.pull == "missing"
    assert config.build.pull_timeout == 120.0
    ceilings = config.ceilings
    assert (ceilings.max_memory_mb, ceilings.max_cpus, ceilings.max_pids) == (2048, 2.5, 512)
    assert ceilings.max_timeout_seconds == 7200


def test_sandbox_defaults_never_pull_and_cap_archives_and_artifacts():
    from service.runtime import runner_config

    config = runner_config(load_settings({}))
    assert config.build.pull == "never"
    assert config.build.base_images == ("*",)
    assert config.archive_limits.max_total_bytes == 256 << 20
    assert config.artifact_limits.max_total_bytes == 256 << 20
    assert config.ceilings.max_timeout_seconds == 86_400


def test_private_hosts_and_http_are_refused_by_default():
    from service.runtime import runner_config

    config = runner_config(load_settings({}))
    assert config.allow_private_hosts is False
    assert config.allow_http is False
    assert config.repo_allowlist == ()


def test_event_settings_reach_the_event_store_options():
    from service.runtime import event_store_options
    from store.events.models import Stream

    options = event_store_options(
        load_settings(
            {
                "WORKER_DATA_DIR": "/srv/ls",
                "WORKER_JOB_EVENT_MAX_ENTRIES": "50",
                "WORKER_ADMIN_AUDIT_EVENT_LIMIT": "500",
                "WORKER_ADMIN_AUDIT_RETENTION": "168h",
                "WORKER_ADMIN_AUDIT_ARCHIVE_DIR": "/srv/archive",
                "WORKER_ADMIN_AUDIT_ARCHIVE_INTERVAL": "5m",
            }
        )
    )
    assert options.directory == Path("/srv/ls/events")
    assert options.retention[Stream.RUNS].max_per_key == 50
    assert options.retention[Stream.AUDIT].max_total == 500
    assert options.retention[Stream.AUDIT].max_age.total_seconds() == 168 * 3600
    assert options.archive_dir == Path("/srv/archive")
    assert options.retention_interval == 300.0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORKER_JOB_NETWORK": "bridge,host"}, "WORKER_JOB_NETWORK"),
        ({"WORKER_JOB_OUTPUT_BYTES": "huge"}, "WORKER_JOB_OUTPUT_BYTES"),
        ({"WORKER_JOB_TARBALL_TIMEOUT": "soon"}, "WORKER_JOB_TARBALL_TIMEOUT"),
        ({"WORKER_JOB_ALLOW_PRIVATE_HOSTS": "maybe"}, "WORKER_JOB_ALLOW_PRIVATE_HOSTS"),
        ({"WORKER_JOB_EVENT_DURABILITY": "sometimes"}, "WORKER_JOB_EVENT_DURABILITY"),
        ({"WORKER_ADMIN_AUDIT_RETENTION": "a week"}, "WORKER_ADMIN_AUDIT_RETENTION"),
        ({"WORKER_JOB_PULL": "always"}, "WORKER_JOB_PULL"),
        ({"WORKER_JOB_BASE_IMAGES": "busybox:$TAG"}, "WORKER_JOB_BASE_IMAGES"),
        ({"WORKER_JOB_MAX_CPUS": "0"}, "WORKER_JOB_MAX_CPUS"),
        ({"WORKER_JOB_MAX_TIMEOUT_SECONDS": "30d"}, "WORKER_JOB_MAX_TIMEOUT_SECONDS"),
        ({"WORKER_JOB_ARTIFACTS_MAX_BYTES": "1KiB"}, "WORKER_JOB_ARTIFACTS_MAX_BYTES"),
        ({"WORKER_JOB_ARCHIVE_MAX_BYTES": "lots"}, "WORKER_JOB_ARCHIVE_MAX_BYTES"),
    ],
)
def test_bad_job_and_event_settings_name_their_variable(env, named):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(named + ":")


def test_durable_cron_settings_are_read_with_specs_that_contain_commas_and_spaces():
    settings = load_settings(
        {
            "WORKER_DURABLE_CRON_HANDLERS": "builtin.noop, reports.daily,builtin.noop,",
            "WORKER_DURABLE_CRON_PRESETS": (
                "nightly=0 3 * * *, twice=0 9,17 * * mon-fri,tick=*/10 * * * * *,h=@every 90s"
            ),
            "WORKER_SCHEDULER_LAG_SECONDS": "2m",
        }
    )
    assert settings.durable_cron_handlers == ("builtin.noop", "reports.daily")
    assert settings.durable_cron_presets == {
        "nightly": "0 3 * * *",
        "twice": "0 9,17 * * mon-fri",
        "tick": "*/10 * * * * *",
        "h": "@every 90s",
    }
    assert settings.scheduler_lag_seconds == 120.0


def test_durable_cron_settings_default_to_nothing():
    settings = load_settings({})
    assert settings.durable_cron_handlers == ()
    assert settings.durable_cron_presets == {}
    assert settings.scheduler_lag_seconds is None


@pytest.mark.parametrize(
    ("env", "named", "mentions"),
    [
        ({"WORKER_DURABLE_CRON_HANDLERS": "a b"}, "WORKER_DURABLE_CRON_HANDLERS", "'a b'"),
        ({"WORKER_DURABLE_CRON_HANDLERS": "job:run"}, "WORKER_DURABLE_CRON_HANDLERS", "job:run"),
        ({"WORKER_DURABLE_CRON_PRESETS": "nightly"}, "WORKER_DURABLE_CRON_PRESETS", "nightly"),
        ({"WORKER_DURABLE_CRON_PRESETS": "a="}, "WORKER_DURABLE_CRON_PRESETS", "empty"),
        ({"WORKER_DURABLE_CRON_PRESETS": "a=61 * * * *"}, "WORKER_DURABLE_CRON_PRESETS", "61"),
        (
            {"WORKER_DURABLE_CRON_PRESETS": "a=@daily,a=@hourly"},
            "WORKER_DURABLE_CRON_PRESETS",
            "twice",
        ),
        ({"WORKER_SCHEDULER_LAG_SECONDS": "0"}, "WORKER_SCHEDULER_LAG_SECONDS", ""),
        ({"WORKER_SCHEDULER_LAG_SECONDS": "soon"}, "WORKER_SCHEDULER_LAG_SECONDS", "soon"),
    ],
)
def test_a_bad_durable_cron_setting_is_an_error_naming_the_variable(env, named, mentions):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(named + ":")
    assert mentions in str(caught.value)


def test_the_seeds_cron_and_binary_variables_are_accepted_and_reported_as_ignored():
    env = {
        "WORKER_CRON_HANDLERS": "a,b",
        "WORKER_CRON_PRESETS": "not even=valid",
        "WORKER_JOB_EVENT_CACHE_TTL": "whatever",
        "WORKER_JOB_GIT_BIN": "/usr/bin/git",
        "WORKER_JOB_DOCKER_BIN": "/usr/bin/docker",
        "WORKER_CONCURRENCY": "2",
    }
    assert load_settings(env).concurrency == 2
    assert ignored_variables(env) == list(IGNORED_SEED_VARIABLES)
    assert ignored_variables({"WORKER_CONCURRENCY": "2"}) == []


# --- admin API transport, auth and guardrails ---------------------------------------------


def test_admin_defaults_are_loopback_without_tls_and_admin_role():
    settings = load_settings({})
    assert settings.admin_http_addr == "127.0.0.1:8081"
    assert settings.admin_listen == ("127.0.0.1", 8081)
    assert settings.admin_tls is None
    assert settings.admin_token is None
    assert settings.admin_roles == {}
    assert settings.admin_default_role is Role.VIEWER
    assert (settings.admin_replay_limit_max, settings.admin_replay_ids_max) == (1000, 1000)
    assert (settings.admin_schedule_run_max, settings.admin_schedule_run_window) == (10, 60.0)
    assert settings.admin_require_approval is False
    assert settings.admin_approval_token is None


def test_admin_settings_are_read(tmp_path: Path):
    settings = load_settings(
        {
            "WORKER_ADMIN_HTTP_ADDR": "[::1]:9443",
            "WORKER_ADMIN_TLS_CERT": str(tmp_path / "server.pem"),
            "WORKER_ADMIN_TLS_KEY": str(tmp_path / "server-key.pem"),
            "WORKER_ADMIN_TLS_CA": str(tmp_path / "ca.pem"),
            "WORKER_ADMIN_TOKEN": "ui:abc-0123456789-abcdefghij,cli:def-0123456789-abcdefghij",
            "WORKER_ADMIN_ROLES": "alice=viewer, ops team=operator",
            "WORKER_ADMIN_DEFAULT_ROLE": "Operator",
            "WORKER_ADMIN_REPLAY_LIMIT_MAX": "50",
            "WORKER_ADMIN_REPLAY_IDS_MAX": "20",
            "WORKER_ADMIN_SCHEDULE_RUN_MAX": "3",
            "WORKER_ADMIN_SCHEDULE_RUN_WINDOW": "5m",
            "WORKER_ADMIN_REQUIRE_APPROVAL": "true",
            "WORKER_ADMIN_APPROVAL_TOKEN": "yes-really",
        }
    )
    assert settings.admin_listen == ("::1", 9443)
    assert settings.admin_tls == (
        tmp_path / "server.pem",
        tmp_path / "server-key.pem",
        tmp_path / "ca.pem",
    )
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == (
        "ui:abc-0123456789-abcdefghij,cli:def-0123456789-abcdefghij"
    )
    assert settings.admin_roles == {"alice": Role.VIEWER, "ops team": Role.OPERATOR}
    assert settings.admin_default_role is Role.OPERATOR
    assert (settings.admin_replay_limit_max, settings.admin_replay_ids_max) == (50, 20)
    assert (settings.admin_schedule_run_max, settings.admin_schedule_run_window) == (3, 300.0)
    assert settings.admin_require_approval is True
    assert settings.admin_approval_token is not None
    assert "yes-really" not in repr(settings)
    assert "def-0123" not in repr(settings.admin_token)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("localhost:1", ("localhost", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[fe80::1%eth0]:8081", ("fe80::1%eth0", 8081)),
        ("admin.example.com:443", ("admin.example.com", 443)),
    ],
)
def test_listen_addresses(addr, expected):
    assert parse_listen_addr(addr) == expected


@pytest.mark.parametrize(
    ("env", "named", "mentions"),
    [
        ({"WORKER_ADMIN_HTTP_ADDR": "8081"}, "WORKER_ADMIN_HTTP_ADDR", "host:port"),
        ({"WORKER_ADMIN_HTTP_ADDR": "::1:8081"}, "WORKER_ADMIN_HTTP_ADDR", "brackets"),
        ({"WORKER_ADMIN_HTTP_ADDR": "[nope]:8081"}, "WORKER_ADMIN_HTTP_ADDR", "IPv6"),
        ({"WORKER_ADMIN_HTTP_ADDR": "host:0"}, "WORKER_ADMIN_HTTP_ADDR", "65535"),
        ({"WORKER_ADMIN_HTTP_ADDR": "host:70000"}, "WORKER_ADMIN_HTTP_ADDR", "65535"),
        ({"WORKER_ADMIN_HTTP_ADDR": ":8081"}, "WORKER_ADMIN_HTTP_ADDR", "host:port"),
        ({"WORKER_ADMIN_ROLES": "alice=root"}, "WORKER_ADMIN_ROLES", "viewer"),
        ({"WORKER_ADMIN_ROLES": "alice"}, "WORKER_ADMIN_ROLES", "cn=role"),
        ({"WORKER_ADMIN_DEFAULT_ROLE": "boss"}, "WORKER_ADMIN_DEFAULT_ROLE", "boss"),
        ({"WORKER_ADMIN_REPLAY_LIMIT_MAX": "0"}, "WORKER_ADMIN_REPLAY_LIMIT_MAX", ""),
        ({"WORKER_ADMIN_REPLAY_IDS_MAX": "x"}, "WORKER_ADMIN_REPLAY_IDS_MAX", ""),
        ({"WORKER_ADMIN_SCHEDULE_RUN_MAX": "0"}, "WORKER_ADMIN_SCHEDULE_RUN_MAX", ""),
        ({"WORKER_ADMIN_SCHEDULE_RUN_WINDOW": "0"}, "WORKER_ADMIN_SCHEDULE_RUN_WINDOW", ""),
        ({"WORKER_ADMIN_REQUIRE_APPROVAL": "maybe"}, "WORKER_ADMIN_REQUIRE_APPROVAL", ""),
    ],
)
def test_a_bad_admin_setting_is_an_error_naming_the_variable(env, named, mentions):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(named + ":")
    assert mentions in str(caught.value)


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"CERT"}, ["WORKER_ADMIN_TLS_KEY", "WORKER_ADMIN_TLS_CA"]),
        ({"CERT", "KEY"}, ["WORKER_ADMIN_TLS_CA"]),
        ({"CA"}, ["WORKER_ADMIN_TLS_CERT", "WORKER_ADMIN_TLS_KEY"]),
    ],
)
def test_tls_settings_are_all_or_none(given, missing):
    env = {f"WORKER_ADMIN_TLS_{name}": f"/x/{name.lower()}.pem" for name in given}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert "must be set together" in message
    assert f"missing: {', '.join(missing)}" in message
    assert load_settings({"WORKER_ADMIN_TLS_CERT": ""}).admin_tls is None


def test_requiring_approval_without_a_token_is_refused():
    with pytest.raises(SettingsError) as caught:
        load_settings({"WORKER_ADMIN_REQUIRE_APPROVAL": "true", "WORKER_ADMIN_APPROVAL_TOKEN": ""})
    assert "WORKER_ADMIN_REQUIRE_APPROVAL" in str(caught.value)
    assert "WORKER_ADMIN_APPROVAL_TOKEN" in str(caught.value)


@pytest.mark.parametrize(
    "token",
    ["x", "cli:short-secret", "a" * 40, "ui:abcdefabcdefabcdefabcdefabcdef"],
    ids=["one-char", "short", "one-repeated-char", "few-distinct"],
)
def test_a_weak_admin_token_refuses_to_start_naming_the_rule(token: str):
    with pytest.raises(SettingsError) as caught:
        load_settings({"WORKER_ADMIN_TOKEN": token})
    message = str(caught.value)
    assert message.startswith("WORKER_ADMIN_TOKEN:")
    assert "at least 24 characters" in message
    assert token.partition(":")[2] not in message if ":" in token else token not in message


def test_a_bad_admin_token_is_refused_without_showing_it():
    with pytest.raises(SettingsError) as caught:
        load_settings({"WORKER_ADMIN_TOKEN": "bad name:secret-value-123"})
    assert str(caught.value).startswith("WORKER_ADMIN_TOKEN:")
    assert "secret-value-123" not in str(caught.value)


def test_run_retention_defaults_keep_a_day_and_the_last_100_runs():
    from service.retention import run_retention

    retention = run_retention(load_settings({}))

    assert retention.rule_for("any").keep_last == 100
    assert retention.rule_for("any").keep_for.total_seconds() == 86400
    assert load_settings({}).run_retention_interval == 600


def test_run_retention_settings_and_per_job_rules_are_read():
    from service.retention import run_retention

    settings = load_settings(
        {
            "WORKER_RUN_RETENTION_KEEP_LAST": "10",
            "WORKER_RUN_RETENTION_KEEP_FOR": "0",
            "WORKER_RUN_RETENTION_INTERVAL": "5m",
            "WORKER_RUN_RETENTION_JOBS": "nightly=365/90d, heartbeat=5",
        }
    )
    retention = run_retention(settings)

    assert settings.run_retention_interval == 300
    assert (retention.default.keep_last, retention.default.keep_for.total_seconds()) == (10, 0)
    nightly, heartbeat = retention.rule_for("nightly"), retention.rule_for("heartbeat")
    assert (nightly.keep_last, nightly.keep_for.total_seconds()) == (365, 90 * 86400)
    assert (heartbeat.keep_last, heartbeat.keep_for.total_seconds()) == (5, 0)


@pytest.mark.parametrize("value", ["nightly", "nightly=0", "Bad Name=3", "x=3/soon"])
def test_a_bad_per_job_retention_rule_names_its_variable(value):
    with pytest.raises(SettingsError, match="WORKER_RUN_RETENTION_JOBS"):
        load_settings({"WORKER_RUN_RETENTION_JOBS": value})


def test_infra_and_image_retention_defaults():
    from service.retention import image_retention

    settings = load_settings({})
    retention = image_retention(settings)

    assert settings.infra_retry_seconds == 600
    assert settings.image_retention_interval == 3600
    assert (retention.default, dict(retention.jobs)) == (3, {})
    assert retention.build_cache_bytes == 10 * 1024**3


def test_infra_and_image_retention_settings_are_read():
    from service.retention import image_retention

    settings = load_settings(
        {
            "WORKER_INFRA_RETRY_SECONDS": "2m",
            "WORKER_IMAGE_RETENTION_KEEP": "2",
            "WORKER_IMAGE_RETENTION_JOBS": "nightly=10, heartbeat=1",
            "WORKER_IMAGE_RETENTION_INTERVAL": "0",
            "WORKER_IMAGE_BUILD_CACHE_MAX_BYTES": "off",
        }
    )
    retention = image_retention(settings)

    assert settings.infra_retry_seconds == 120
    assert settings.image_retention_interval == 0
    assert retention.keep_for("nightly") == 10
    assert retention.keep_for("heartbeat") == 1
    assert retention.keep_for("other") == 2
    assert retention.build_cache_bytes is None
    assert (
        load_settings({"WORKER_IMAGE_BUILD_CACHE_MAX_BYTES": "2GiB"}).image_build_cache_max_bytes
        == 2 * 1024**3
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"WORKER_IMAGE_RETENTION_JOBS": "nightly=0"}, "WORKER_IMAGE_RETENTION_JOBS"),
        ({"WORKER_IMAGE_RETENTION_JOBS": "nightly"}, "WORKER_IMAGE_RETENTION_JOBS"),
        ({"WORKER_IMAGE_RETENTION_KEEP": "0"}, "WORKER_IMAGE_RETENTION_KEEP"),
        ({"WORKER_IMAGE_BUILD_CACHE_MAX_BYTES": "lots"}, "WORKER_IMAGE_BUILD_CACHE_MAX_BYTES"),
        ({"WORKER_INFRA_RETRY_SECONDS": "soon"}, "WORKER_INFRA_RETRY_SECONDS"),
    ],
)
def test_bad_infra_and_image_settings_name_their_variable(env, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)
