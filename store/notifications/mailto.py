"""The recipients of an ``email`` rule: an RFC 6068 ``mailto:`` URL, checked strictly.

``mailto:ops@example.com,oncall@example.com`` names 1-:data:`MAX_RECIPIENTS` addresses,
comma-separated (percent-encoded characters are decoded, then checked like the rest). Only
the addresses are taken from the URL: a query (``?subject=...``, ``?cc=...``, any header) or
a fragment is refused, so a rule can never set a header of the mail it sends. Each address is
a plain ASCII ``local@domain`` (a dot-atom local part, a host name of two or more labels; no
quoted local parts, address literals, display names or comments), at most
:data:`MAX_ADDRESS` characters, and must read back unchanged through the standard library's
:class:`email.headerregistry.Address`. The same check applies to the sender the operator
configures (``WORKER_SMTP_FROM``).
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.headerregistry import Address
from urllib.parse import unquote

MAX_RECIPIENTS = 20
MAX_ADDRESS = 254
MAX_LOCAL = 64
SCHEME = "mailto:"
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a plain ``local@domain`` address (``None`` when it is one)."""
    if not isinstance(address, str) or not address:
        return "an address is empty"
    if any(not 33 <= ord(char) <= 126 for char in address):
        return "an address holds a space, a control or a non-ASCII character"
    if len(address) > MAX_ADDRESS:
        return f"an address is longer than {MAX_ADDRESS} characters"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return f"{address!r} is not local@domain"
    if len(local) > MAX_LOCAL or not _LOCAL.fullmatch(local):
        return f"{address!r}: the part before '@' is not a plain dot-atom"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"{address!r}: the domain is not a host name like example.com"
    if labels[-1].isdigit():
        return f"{address!r}: the domain is not a host name like example.com"
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, HeaderParseError, IndexError):
        return f"{address!r} is not a valid address"
    if parsed.addr_spec != address:
        return f"{address!r} is not a valid address"
    return None


def parse_mailto(url: str) -> tuple[str, ...]:
    """The addresses of ``url``; raises :class:`ValueError` saying what is wrong."""
    if not isinstance(url, str) or url[: len(SCHEME)].lower() != SCHEME:
        raise ValueError("an email rule's url is mailto:address[,address...]")
    if any(ord(char) < 32 or ord(char) == 127 for char in url):
        raise ValueError("must not hold control characters (CR, LF, ...)")
    rest = url[len(SCHEME) :]
    if "?" in rest or "#" in rest:
        raise ValueError("only addresses: no ?query (subject, cc, headers...) nor #fragment")
    parts = rest.split(",")
    if len(parts) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} addresses (got {len(parts)})")
    addresses: list[str] = []
    for part in parts:
        try:
            address = unquote(part, errors="strict")
        except UnicodeDecodeError:
            raise ValueError("a percent-encoded address is not UTF-8") from None
        problem = address_problem(address)
        if problem is not None:
            raise ValueError(problem)
        if address.lower() in (known.lower() for known in addresses):
            raise ValueError(f"{address!r} is named twice")
        addresses.append(address)
    return tuple(addresses)
