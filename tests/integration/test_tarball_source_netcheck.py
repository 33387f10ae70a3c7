"""Host and address rules shared by the network sources (tarball now, git later).

Resolution goes through the machine's real resolver (``localhost``), the rest is pure.
"""

from __future__ import annotations

import ipaddress

import pytest

from jobrunner.errors import FetchFailed, NotAllowed
from jobrunner.sources.netcheck import (
    check_scheme,
    host_allowed,
    is_public_address,
    resolve_checked,
)


@pytest.mark.parametrize(
    ("host", "allowlist", "allowed"),
    [
        ("example.com", ["example.com"], True),
        ("EXAMPLE.com", ["example.COM"], True),
        ("example.com.", ["example.com"], True),
        ("anything.example", ["*"], True),
        ("evil-example.com", ["example.com"], False),
        ("example.com.evil.net", ["example.com"], False),
        ("sub.example.com", ["example.com"], False),  # exact names, no implicit subdomains
        ("example.com", [], False),
        ("", ["*"], False),
    ],
)
def test_hosts_match_the_allowlist_exactly(host: str, allowlist: list[str], allowed: bool) -> None:
    assert host_allowed(host, allowlist) is allowed


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:93.184.216.34", True),  # IPv4-mapped goes where its IPv4 address goes
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("::7f00:1", False),  # IPv4-compatible ::127.0.0.1 (::/96)
        ("::a9fe:a9fe", False),  # IPv4-compatible 169.254.169.254
        ("::ffff:0:7f00:1", False),  # SIIT IPv4-translated 127.0.0.1 (::ffff:0:0:0/96)
        ("::ffff:0:5db8:d822", False),  # SIIT, even of a public IPv4 address
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 (64:ff9b:1::/48)
        ("64:ff9b:1:5db8:d8:2200::", False),
        ("fec0::1", False),  # site-local (fec0::/10)
        ("64:ff9b::5db8:d822", True),  # NAT64 of a public address goes there
        ("2002:5db8:d822::1", True),  # 6to4 of a public address
    ],
)
def test_only_public_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_only_https_is_allowed_by_default() -> None:
    check_scheme("https", allow_http=False)
    check_scheme("HTTPS", allow_http=False)
    with pytest.raises(NotAllowed, match="plain http is not allowed"):
        check_scheme("http", allow_http=False)
    check_scheme("http", allow_http=True)
    with pytest.raises(NotAllowed):
        check_scheme("ftp", allow_http=True)


async def test_a_name_resolving_to_loopback_is_refused_unless_private_hosts_are_allowed() -> None:
    with pytest.raises(NotAllowed, match=r"'localhost' resolves to address 127.0.0.1"):
        await resolve_checked("localhost", 443, allow_private=False)
    assert ipaddress.ip_address("127.0.0.1") in await resolve_checked(
        "localhost", 443, allow_private=True
    )


async def test_an_address_literal_is_checked_without_resolving() -> None:
    with pytest.raises(NotAllowed, match=r"10.1.1.1"):
        await resolve_checked("10.1.1.1", 443, allow_private=False)
    assert await resolve_checked("[::1]", 443, allow_private=True) == [ipaddress.ip_address("::1")]


async def test_a_name_that_does_not_resolve_is_a_fetch_failure() -> None:
    with pytest.raises(FetchFailed, match="cannot resolve"):
        await resolve_checked("no-such-host.invalid", 443, allow_private=True)
