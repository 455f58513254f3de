"""Where `http(s)` inputs may connect: the policy's `urls:` allow-list, as data.

A job's author picks its input URLs, so without a rule a job could make the node fetch from
inside its own network (a cloud metadata service, a router's admin page, a loopback API) and
read the answer back as its input. Entries are `*` (any public address, the default), a host
name, `host:port`, an IP address or a CIDR. Loopback, link-local, private and other
non-public addresses are refused unless an entry names the host (or host:port) or a network
that holds the address. The check runs on the address each connection really goes to, after
resolution and on every redirect, so a public name that resolves (or redirects) inside is
refused too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PUBLIC = "*"


@dataclass(frozen=True)
class Destinations:
    public: bool = True  # `*`: any public address
    names: frozenset[str] = frozenset()  # lower-case hosts and host:port pairs
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: tuple[str, ...] | list[str]) -> Destinations:
        """Raises ValueError naming the entry that is none of the accepted forms."""
        public, names, networks = False, set(), []
        for entry in entries:
            item = entry.strip().lower()
            if item == PUBLIC:
                public = True
            elif _network(item) is not None:
                networks.append(_network(item))
            elif _is_name(item):
                names.add(item.strip("[]"))
            else:
                raise ValueError(f"{entry!r} is not *, a host, host:port, an address or a CIDR")
        return cls(public, frozenset(names), tuple(networks))

    def refusal(self, host: str, port: int, address: str) -> str | None:
        """Why a connection to `address` for `host:port` is refused, or None if allowed."""
        ip = address_of(address)
        if ip is None:
            return f"{address!r} is not an address"
        host = host.lower().strip("[]")
        if host in self.names or f"{host}:{port}" in self.names:
            return None
        if any(ip in network for network in self.networks):
            return None
        if self.public and ip.is_global:
            return None
        kind = "a public address" if ip.is_global else _kind(ip)
        return f"refused: {host} is {kind} ({ip}), which the policy's urls do not allow"


def address_of(text: str) -> Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever its spelling
    return ip


def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return None


def _is_name(text: str) -> bool:
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    labels = host.split(".")
    valid = all(label and all(c.isalnum() or c == "-" for c in label) for label in labels)
    return valid and (port == "" or (port.isdigit() and 0 < int(port) < 65536))


def _kind(ip: Address) -> str:
    for kind, test in (
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("a private", ip.is_private),
    ):
        if test:
            return f"{kind} address"
    return "not a public address"
