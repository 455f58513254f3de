"""The node's one typed configuration, resolved from flags, then EDGEBAC_* variables.

Errors name the exact flag at fault. Timing presets carry a reason for every default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from edgebac.errors import ConfigError
from edgebac.eventlog.identity import parse_public_key
from edgebac.gossip.addresses import AddressError, parse_address
from edgebac.gossip.config import PRESETS as GOSSIP_PRESETS
from edgebac.gossip.config import GossipConfig

ROLES = frozenset({"requester", "compute"})
DEFAULT_PORT = 7700
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Timing:
    max_clock_skew_ms: int
    shutdown_grace_s: float
    runner_tick_s: float
    bid_window_ms: int


PRESETS: Mapping[str, Timing] = MappingProxyType(
    {
        "default": Timing(
            # Edge devices drift and may sync time rarely; beyond 5 minutes a clock is wrong,
            # and accepting it would drag every node's logical clock into its future.
            max_clock_skew_ms=300_000,
            # Long enough for in-flight API calls to answer; short enough for systemd's stop.
            shutdown_grace_s=5.0,
            # Timeouts and bid windows are checked this often; events wake the runner at once.
            runner_tick_s=0.25,
            # A LAN round trip is milliseconds; 2 s leaves slow edge links time to bid.
            bid_window_ms=2_000,
        ),
        "fast": Timing(
            # Tests run on one machine, one clock: any skew at all is a bug worth seeing.
            max_clock_skew_ms=5_000,
            shutdown_grace_s=1.0,
            runner_tick_s=0.05,
            bid_window_ms=500,
        ),
    }
)


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path = Path("~/.edgebac")
    listen: HostPort = HostPort("127.0.0.1", DEFAULT_PORT)
    advertise: HostPort | None = None
    peers: tuple[HostPort, ...] = ()
    network_key: Path | None = None
    roles: frozenset[str] = ROLES
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    timing: Timing = PRESETS["default"]
    gossip: GossipConfig = GOSSIP_PRESETS["default"]
    authority: bytes | None = None  # network authority's public key: admission mode
    policy: Path | None = None  # the operator's policy file (allow-lists, hooks)


def parse_host_port(text: str, flag: str, *, allow_port_zero: bool = False) -> HostPort:
    """One `HOST:PORT` flag value; a URL, a bad host or port is refused with the flag's name."""
    try:
        host, port = parse_address(text.strip(), allow_port_zero=allow_port_zero)
    except AddressError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    return HostPort(host, port)


def parse_peers(text: str | None, flag: str = "--peers") -> tuple[HostPort, ...]:
    """Comma-separated seeds: any other separator makes one value that is not HOST:PORT."""
    if not text:
        return ()
    return tuple(parse_host_port(item, flag) for item in text.split(",") if item.strip())


def parse_roles(text: str, flag: str = "--roles") -> frozenset[str]:
    roles = frozenset(item.strip() for item in text.split(",") if item.strip())
    unknown = sorted(roles - ROLES)
    if unknown or not roles:
        raise ConfigError(
            f"{flag}: unknown role {', '.join(unknown) or '(none)'}; use requester, compute or both"
        )
    return roles


def parse_labels(text: str | None, flag: str = "--labels") -> Mapping[str, str]:
    labels: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _LABEL_KEY.match(key):
            raise ConfigError(f"{flag}: {item.strip()!r} is not key=value")
        labels[key] = value.strip()
    return MappingProxyType(labels)


def parse_preset(name: str, flag: str = "--preset") -> Timing:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"{flag}: unknown preset {name!r}; use {', '.join(PRESETS)}") from None


def parse_gossip_preset(name: str, flag: str = "--preset") -> GossipConfig:
    parse_preset(name, flag)
    return GOSSIP_PRESETS[name]


def from_flags(
    *,
    data_dir: Path,
    listen: str,
    advertise: str | None,
    peers: str | None,
    network_key: Path | None,
    roles: str,
    labels: str | None,
    preset: str,
    authority: str | None,
    policy: Path | None,
) -> NodeConfig:
    """The node's configuration from the `edgebac node` flags as typed; errors name the flag."""
    if network_key is not None and not network_key.is_file():
        raise ConfigError(f"--network-key: {network_key} is not a readable file")
    return NodeConfig(
        data_dir=data_dir,
        listen=parse_host_port(listen, "--listen", allow_port_zero=True),
        advertise=parse_host_port(advertise, "--advertise") if advertise else None,
        peers=parse_peers(peers),
        network_key=network_key,
        roles=parse_roles(roles),
        labels=parse_labels(labels),
        timing=parse_preset(preset),
        gossip=parse_gossip_preset(preset),
        authority=parse_public_key(authority, "--authority") if authority else None,
        policy=policy,
    )
