"""Where a source may be fetched from: scheme, host allowlist and address checks.

Shared by the tarball and git sources. Every check raises :class:`~jobrunner.errors.NotAllowed`
(a permanent refusal) with a message naming what was refused and why; a name that cannot be
resolved raises :class:`~jobrunner.errors.FetchFailed` (DNS outages are transient).

Against server-side request forgery a source host is checked three times, on every hop:

1. the scheme is ``https`` (``http`` only with ``allow_http``);
2. the host is in the allowlist (exact name, case-insensitive, one trailing dot ignored;
   ``*`` allows any host). Entries are compared as written, so internationalised names must
   be listed in their ASCII ``xn--`` form, which is how the URL parser hands them to us;
3. every address the name resolves to is public, unless ``allow_private_hosts``: a positive
   rule (:func:`is_public_address`), not a list of bad ranges, so a form nobody thought of
   is refused rather than let through.

:func:`resolve_checked` returns the checked addresses so the caller can connect to exactly
those (the tarball source does; see :mod:`jobrunner.sources.tarball`), which closes the
DNS-rebinding gap between checking a name and connecting to it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Final

from jobrunner.errors import FetchFailed, NotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ANY_HOST: Final = "*"

# IPv6 prefixes that embed an IPv4 address the packet may end up at (NAT64 well-known prefix).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Where the globally routable IPv6 unicast addresses are allocated (RFC 4291, IANA).
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def normalise_host(host: str) -> str:
    """The comparable form of a host name: lower case, one trailing dot removed, no IPv6
    brackets."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.removesuffix(".")


def check_scheme(scheme: str, *, allow_http: bool, what: str = "source") -> None:
    """Refuse any scheme but ``https`` (and ``http`` when ``allow_http``)."""
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme.lower() not in allowed:
        hint = "" if allow_http or scheme.lower() != "http" else " (plain http is not allowed)"
        raise NotAllowed(f"{what}: scheme {scheme!r} is not allowed, use https{hint}")


def host_allowed(host: str, allowlist: Iterable[str]) -> bool:
    """Whether ``host`` matches an allowlist entry exactly (case-insensitive) or ``*``."""
    wanted = normalise_host(host)
    if not wanted:
        return False
    for entry in allowlist:
        entry = normalise_host(entry)
        if entry == ANY_HOST or (entry and entry == wanted):
            return True
    return False


def check_host_allowed(host: str, allowlist: Iterable[str], *, what: str = "source") -> None:
    """Raise :class:`NotAllowed` unless ``host`` is in ``allowlist``."""
    if not host_allowed(host, allowlist):
        raise NotAllowed(f"{what}: host {host!r} is not in the allowlist")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is one of the mapping forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is globally routable unicast (and so is whatever it embeds).

    An IPv6 address that embeds an IPv4 address in a form packets are routed by (IPv4-mapped
    ``::ffff:0:0/96``, the NAT64 prefix ``64:ff9b::/96``, 6to4, Teredo) is public only when
    that IPv4 address is. Any other IPv6 address must lie in global unicast space
    (``2000::/3``): this refuses, among others, IPv4-compatible ``::/96``, SIIT
    ``::ffff:0:0:0/96``, local-use NAT64 ``64:ff9b:1::/48`` and site-local ``fec0::/10``,
    which Python's ``is_global`` counts as global."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            if not is_public_address(embedded):
                return False
        elif address not in _GLOBAL_UNICAST:
            return False
    # ``is_global`` is false for loopback, private, link-local, unspecified, reserved and
    # shared (100.64/10) ranges; multicast can be "global", so it is refused explicitly.
    return address.is_global and not address.is_multicast


def check_address(address: IPAddress, *, allow_private: bool, host: str = "") -> None:
    """Raise :class:`NotAllowed` for a non-public address unless ``allow_private``."""
    if allow_private or is_public_address(address):
        return
    named = f"host {host!r} resolves to " if host and host != str(address) else ""
    raise NotAllowed(
        f"{named}address {address} is loopback, private, link-local or otherwise not "
        "public; refused (WORKER_JOB_ALLOW_PRIVATE_HOSTS is off)"
    )


def parse_address(host: str) -> IPAddress | None:
    """The IP address ``host`` spells, or None when it is a name."""
    try:
        return ipaddress.ip_address(normalise_host(host))
    except ValueError:
        return None


async def resolve_checked(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Resolve ``host`` once and check every address it has.

    Returns the addresses (in resolver order, without duplicates) to connect to. All of them
    must pass :func:`check_address`: one private address among public ones refuses the host,
    since which one a later connection picks is not ours to choose.

    Raises:
        NotAllowed: an address is not public and ``allow_private`` is off.
        FetchFailed: the name cannot be resolved.
    """
    literal = parse_address(host)
    if literal is not None:
        check_address(literal, allow_private=allow_private, host=host)
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            normalise_host(host), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"cannot resolve host {host!r}: {exc}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # Scope ids ("fe80::1%eth0") are dropped: link-local is refused anyway.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchFailed(f"cannot resolve host {host!r}: no IPv4 or IPv6 address")
    for address in addresses:
        check_address(address, allow_private=allow_private, host=host)
    return addresses
