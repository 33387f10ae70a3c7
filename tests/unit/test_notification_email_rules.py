"""The ``email`` channel's pure logic: the ``mailto:`` recipients of a rule, the
``WORKER_SMTP_*`` settings, the SMTP password file, and the mail made of a notification
(whose untrusted text can never add a header)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import os
from pathlib import Path
from typing import Any

import pytest

from service.errors import SettingsError
from service.notifications.mail import build_message, parse_smtp_url, read_password
from service.notifications.messages import render
from service.settings import load_settings
from service.smtp_settings import smtp_mailer
from store.notifications._sealing import keeping_secret
from store.notifications.errors import InvalidRule
from store.notifications.mailto import MAX_RECIPIENTS, address_problem, parse_mailto
from store.notifications.models import (
    Channel,
    NotificationRule,
    RuleEvent,
    RuleScope,
    check_rule,
)


def email_rule(url: str, **fields: Any) -> NotificationRule:
    return NotificationRule(
        name="mail-ops",
        scope=RuleScope.JOB,
        target="nightly-report",
        events=(RuleEvent.FAILED,),
        channel=Channel.EMAIL,
        url=url,
        **fields,
    )


def test_a_mailto_url_names_its_addresses() -> None:
    assert parse_mailto("mailto:ops@example.com,oncall@example.com") == (
        "ops@example.com",
        "oncall@example.com",
    )
    assert parse_mailto("MAILTO:a.b+tag@mail.example.org") == ("a.b+tag@mail.example.org",)
    assert parse_mailto("mailto:ops%40example.com") == ("ops@example.com",)  # RFC 6068
    rule = check_rule(email_rule("mailto:ops@example.com,oncall@example.com"))
    assert rule.channel is Channel.EMAIL


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mailto:", "an address is empty"),
        ("mailto:ops@example.com,", "an address is empty"),
        ("mailto:not-an-address", "is not local@domain"),
        ("mailto:ops@localhost", "the domain is not a host name"),
        ("mailto:ops@[127.0.0.1]", "the domain is not a host name"),
        ("mailto:ops@10.0.0.1", "the domain is not a host name"),
        ("mailto:ops@-bad-.example.com", "the domain is not a host name"),
        ("mailto:.ops@example.com", "not a plain dot-atom"),
        ("mailto:o..ps@example.com", "not a plain dot-atom"),
        ('mailto:"o ps"@example.com', "spaces or control characters"),
        ('mailto:"ops"@example.com', "not a plain dot-atom"),
        ("mailto:Ops <ops@example.com>", "spaces or control characters"),
        ("mailto:ops@example.com%0D%0ABcc:evil@x.com", "a space, a control"),
        ("mailto:ops@example.com%0ABcc:evil@x.com", "a space, a control"),
        ("mailto:ops@example.com\r\nBcc: evil@x.com", "spaces or control characters"),
        ("mailto:ops@example.com?subject=hello", "no ?query"),
        ("mailto:ops@example.com?bcc=evil@x.com", "no ?query"),
        ("mailto:?to=ops@example.com", "no ?query"),
        ("mailto:ops@example.com#x", "#fragment"),
        ("mailto:ops@example.com,OPS@example.com", "named twice"),
        ("mailto:jos\u00e9@example.com", "non-ASCII"),
        ("mailto:jos%C3%A9@example.com", "non-ASCII"),
        ("mailto:x%FF@example.com", "not UTF-8"),
        ("mailto:" + "a" * 65 + "@example.com", "not a plain dot-atom"),
        ("https://example.com/hook", "mailto:address"),
        ("mailto:" + ",".join(f"u{n}@example.com" for n in range(21)), "at most 20 addresses"),
    ],
)
def test_a_bad_mailto_url_is_refused_naming_the_url(url: str, says: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        check_rule(email_rule(url))
    assert caught.value.field == "url"
    assert says in caught.value.message


def test_twenty_recipients_are_accepted_and_the_url_length_is_capped() -> None:
    many = "mailto:" + ",".join(f"u{n}@example.com" for n in range(MAX_RECIPIENTS))
    assert len(parse_mailto(many)) == MAX_RECIPIENTS
    with pytest.raises(InvalidRule, match="url: must be 1-2048 characters"):
        check_rule(email_rule("mailto:" + "a" * 2050 + "@example.com"))


def test_an_email_rule_has_no_secret_and_other_channels_take_no_mailto() -> None:
    with pytest.raises(InvalidRule) as caught:
        check_rule(email_rule("mailto:ops@example.com", secret="s" * 16))
    assert caught.value.field == "secret"
    chat = NotificationRule(
        name="c",
        scope=RuleScope.GLOBAL,
        events=(RuleEvent.FAILED,),
        channel=Channel.CHAT,
        url="mailto:ops@example.com",
    )
    with pytest.raises(InvalidRule, match="url: must be an http"):
        check_rule(chat)


def test_a_webhook_turned_into_an_email_rule_drops_its_secret() -> None:
    stored = NotificationRule(
        name="mail-ops",
        scope=RuleScope.GLOBAL,
        events=(RuleEvent.FAILED,),
        channel=Channel.WEBHOOK,
        url="https://hooks.example.com/x",
        sealed_secret=b"sealed-bytes",
    )
    edited = keeping_secret(email_rule("mailto:ops@example.com"), stored)
    assert edited.sealed_secret is None
    assert edited.secret_set is False
    webhook = keeping_secret(dataclasses.replace(stored, sealed_secret=None), stored)
    assert webhook.sealed_secret == b"sealed-bytes"


def test_address_problem_accepts_plain_addresses_only() -> None:
    assert address_problem("longshore@example.com") is None
    assert address_problem("Longshore <longshore@example.com>") is not None
    assert address_problem("longshore@example.com\n") is not None
    assert address_problem("") is not None


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("smtp://127.0.0.1:2525", ("smtp", "127.0.0.1", 2525)),
        ("SMTPS://Mail.Example.COM:465/", ("smtps", "mail.example.com", 465)),
        ("smtps://[2001:db8::25]", ("smtps", "2001:db8::25", 465)),
        ("smtp+starttls://192.0.2.25", ("smtp+starttls", "192.0.2.25", 587)),
        ("smtp://localhost", ("smtp", "localhost", 25)),
        ("smtp://[::1]:25", ("smtp", "::1", 25)),
        ("smtp+starttls://mail.example.com", ("smtp+starttls", "mail.example.com", 587)),
        ("smtps://mail.example.com:4650", ("smtps", "mail.example.com", 4650)),
    ],
)
def test_smtp_urls(url: str, parsed: tuple[str, str, int]) -> None:
    assert parse_smtp_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("smtp://mail.example.com:25", "loopback host only"),
        ("smtp://10.0.0.5", "loopback host only"),
        ("http://mail.example.com", "must be smtp://"),
        ("smtps://user:pw@mail.example.com", "must not carry credentials"),
        ("smtps://mail.example.com/path", "scheme://host[:port] only"),
        ("smtps://mail.example.com:99999", "port"),
        ("smtps://", "names no host"),
        ("smtps://mail.example.com:0", "port"),
        ("smtp://[::1]:0", "port"),
        ("smtps://@mail.example.com", "must not carry credentials"),
        ("smtps://:pw@mail.example.com", "must not carry credentials"),
        ("smtps://mail example.com", "without spaces or control characters"),
        ("smtps://mail.exa\nmple.com", "without spaces or control characters"),
        ("smtps://\x00mail.example.com", "without spaces or control characters"),
        ("smtps://m\u00e4il.example.com", "printable ASCII"),
        ("smtps://mail%2eexample.com", "is not a host name"),
        ("smtps://mail.example.com;x", "is not a host name"),
        ("smtps://-x-.example.com", "is not a host name"),
        ("smtps://1.2.3.4.5", "is not a host name"),
        ("smtps://[fe80::1%25eth0]", "is not a host name"),
    ],
)
def test_bad_smtp_urls_are_refused_naming_the_variable(url: str, says: str) -> None:
    env = {"WORKER_SMTP_URL": url, "WORKER_SMTP_FROM": "longshore@example.com"}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert "WORKER_SMTP_URL" in str(caught.value)
    assert says in str(caught.value)
    assert "pw" not in str(caught.value).replace("WORKER", "")


def test_smtp_settings_go_together(tmp_path: Path) -> None:
    assert load_settings({}).smtp_server is None
    with pytest.raises(SettingsError, match="WORKER_SMTP_FROM"):
        load_settings({"WORKER_SMTP_URL": "smtps://mail.example.com"})
    with pytest.raises(SettingsError, match="WORKER_SMTP_FROM: 'x' is not local@domain"):
        load_settings({"WORKER_SMTP_URL": "smtps://m.example.com", "WORKER_SMTP_FROM": "x"})
    with pytest.raises(SettingsError, match="WORKER_SMTP_URL is not"):
        load_settings({"WORKER_SMTP_FROM": "longshore@example.com"})
    base = {"WORKER_SMTP_URL": "smtps://mail.example.com", "WORKER_SMTP_FROM": "l@example.com"}
    with pytest.raises(SettingsError, match="must be set together"):
        load_settings({**base, "WORKER_SMTP_USERNAME": "longshore"})
    server = load_settings(base).smtp_server
    assert server is not None
    assert (server.scheme, server.host, server.port, server.sender) == (
        "smtps",
        "mail.example.com",
        465,
        "l@example.com",
    )


def test_the_password_file_must_be_private_and_is_never_shown(tmp_path: Path) -> None:
    secret = "pa55-w0rd-not-shown"
    path = tmp_path / "smtp-password"
    path.write_text(secret + "\n")
    path.chmod(0o644)
    with pytest.raises(ValueError, match="make it 0600") as caught:
        read_password(path)
    assert secret not in str(caught.value)
    env = {
        "WORKER_SMTP_URL": "smtps://mail.example.com",
        "WORKER_SMTP_FROM": "longshore@example.com",
        "WORKER_SMTP_USERNAME": "longshore",
        "WORKER_SMTP_PASSWORD_FILE": str(path),
    }
    with pytest.raises(SettingsError, match="WORKER_SMTP_PASSWORD_FILE") as start:
        smtp_mailer(load_settings(env))  # checked when a worker starts
    assert secret not in str(start.value)
    path.chmod(0o600)
    assert read_password(path) == secret
    assert smtp_mailer(load_settings(env)) is not None
    path.write_text("two\nlines\n")
    with pytest.raises(ValueError, match="on one line"):
        read_password(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_password(tmp_path / "missing")
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate")
    os.chmod(path, 0o600)
    path.write_text(secret)
    with pytest.raises(SettingsError, match="WORKER_SMTP_CA_FILE"):
        smtp_mailer(load_settings({**env, "WORKER_SMTP_CA_FILE": str(bad_ca)}))


def test_untrusted_text_never_adds_a_header_of_the_mail() -> None:
    evil = "nightly\r\nBcc: evil@x.example\r\n\r\nforged body"
    message = {
        "rule": "mail-ops",
        "event": "failed\r\nX-Evil: 1",
        "subject": {
            "kind": "run",
            "job": evil,
            "status": "failed",
            "error": "exit 3\r\nBcc: evil@x.example",
            "exitCode": 3,
        },
    }
    rule = email_rule("mailto:ops@example.com,oncall@example.com", template="{job}: {error}")
    mail = build_message(rule, message, sender="longshore@example.com", task_id=42)
    raw = mail.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert parsed["X-Evil"] is None
    assert sorted(parsed.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "Auto-Submitted",
            "X-Longshore-Event",
            "X-Longshore-Delivery",
            "Content-Type",
            "Content-Transfer-Encoding",
            "MIME-Version",
        ]
    )
    assert parsed["To"] == "ops@example.com, oncall@example.com"
    assert parsed["Auto-Submitted"] == "auto-generated"
    subject = parsed["Subject"]
    assert subject.startswith("Longshore: failed  X-Evil: 1 of job nightly  Bcc: evil@x.example")
    assert "\r" not in subject
    assert "\n" not in subject
    body = parsed.get_content()
    assert body.startswith("nightly  Bcc: evil@x.example    forged body: exit 3  Bcc: ")
    assert "exitCode: 3" in body
    assert b"\r\nBcc:" not in raw.split(b"\r\n\r\n", 1)[0]


def test_the_subject_names_the_schedule_of_a_missed_firing() -> None:
    message = {
        "rule": "r",
        "event": "missed",
        "subject": {"kind": "firing", "schedule": "hourly", "job": "report", "status": "missed"},
    }
    mail = build_message(
        email_rule("mailto:ops@example.com"), message, sender="l@example.com", task_id=1
    )
    assert mail["Subject"] == "Longshore: missed of schedule hourly"
    assert str(mail["Message-ID"]).endswith("@example.com>")


def test_a_test_notification_names_its_rule_in_the_subject_and_the_text() -> None:
    message = {
        "rule": "mail-ops",
        "event": "test",
        "subject": {"kind": "test", "rule": "mail-ops", "status": "test notification"},
    }
    mail = build_message(
        email_rule("mailto:ops@example.com"), message, sender="l@example.com", task_id=7
    )
    assert mail["Subject"] == "Longshore: test of rule mail-ops"
    assert mail["X-Longshore-Event"] == "test"
    body = str(mail.get_content())
    assert body.startswith("Longshore: test of rule mail-ops (test notification)")
    assert render("{subject}|{job}|{rule}", message) == "rule mail-ops|{job}|mail-ops"
    # A run's subject is still its job, even when its message says "test" somewhere.
    run = {"event": "failed", "subject": {"kind": "run", "job": "nightly", "status": "test"}}
    assert render("{subject}", run) == "nightly"
