"""What a peer address is: `HOST:PORT`, checked once wherever an address enters a node.

Addresses arrive from flags, from peer lists riding along exchanges and from `NodeAnnounced`
events any member may write. One that can never be dialled (a URL, a DNS label over 63
characters, which makes aiohttp's IDNA encoding raise `UnicodeError`) must be refused where it
enters, not discovered by the loop that dials it.
"""

from __future__ import annotations

import functools
import ipaddress
import re

MAX_HOST_CHARS = 253  # the longest DNS name
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class AddressError(ValueError):
    """Not a `HOST:PORT` address; the message says what is wrong with it."""


def _check_host(host: str, text: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise AddressError(f"{text!r}: {host} is not an IPv6 address") from None
    if not host:
        raise AddressError(f"{text!r} has no host")
    if len(host) > MAX_HOST_CHARS:
        raise AddressError(f"{text!r}: host is longer than {MAX_HOST_CHARS} characters")
    if all(_LABEL.match(label) for label in host.removesuffix(".").split(".")):
        return host
    raise AddressError(f"{text!r}: {host!r} is not a host name or IP address")


def parse_address(text: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """(host, port) of a `HOST:PORT` (IPv6 in brackets), or AddressError saying why not."""
    if not isinstance(text, str):
        raise AddressError(f"{text!r} is not text")
    if "://" in text or text.startswith(("http:", "https:")):
        raise AddressError(f"{text!r} is a URL; give HOST:PORT (no scheme)")
    if any(c.isspace() or c in ";|/" for c in text):
        raise AddressError(f"{text!r} is not one HOST:PORT (separate addresses with commas)")
    host, sep, port_text = text.rpartition(":")
    low = 0 if allow_port_zero else 1
    if not sep or not port_text.isascii() or not port_text.isdigit():
        raise AddressError(f"{text!r} is not HOST:PORT")
    if not low <= int(port_text) <= 65535 or len(port_text) > 5:
        raise AddressError(f"{text!r}: port must be {low}-65535")
    if ":" in host and not host.startswith("["):
        raise AddressError(f"{text!r}: write an IPv6 address in brackets, [ADDR]:PORT")
    return _check_host(host, text).strip("[]"), int(port_text)


def is_address(text: object) -> bool:
    """True for a dialable `HOST:PORT` string (what peer lists and announcements may carry)."""
    return isinstance(text, str) and len(text) <= MAX_HOST_CHARS + 8 and _valid(text)


@functools.lru_cache(maxsize=8192)
def _valid(text: str) -> bool:
    # Cached: the same few addresses ride along every exchange, thousands of times a minute.
    try:
        parse_address(text)
    except AddressError:
        return False
    return True
