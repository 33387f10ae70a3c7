"""Listen addresses: ``host:port`` text (an IPv6 address in brackets) and back."""

from __future__ import annotations

import ipaddress
import re

_ADDR = re.compile(r"^(?:\[(?P<v6>[^\[\]\s]+)\]|(?P<host>[^\[\]:\s]+)):(?P<port>[0-9]{1,5})$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def parse_listen_addr(text: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 address in brackets: ``[::1]:8081``) into ``(host, port)``;
    raises ``ValueError`` saying what is wrong."""
    match = _ADDR.fullmatch(text.strip())
    if match is None:
        raise ValueError("must be 'host:port' (an IPv6 address in brackets, e.g. '[::1]:8081')")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    if match["v6"] is not None:
        host = match["v6"]
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        return host, port
    host = match["host"]
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or an IP address")
    return host, port


def format_host_port(host: str, port: int) -> str:
    """The inverse of :func:`parse_listen_addr` (IPv6 addresses in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
