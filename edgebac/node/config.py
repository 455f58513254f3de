"""The node's one typed configuration, resolved from flags, then EDGEBAC_* variables.

Errors name the exact flag at fault. Timing presets carry a reason for every default.
"""

from __future__ import annotations

import ipaddress
import os
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
class TlsConfig:
    """TLS for the client API: the operator's certificate and key, or one the node makes."""

    cert: Path | None = None
    key: Path | None = None
    self_signed: bool = False  # made on first start in the data dir (its fingerprint printed)


@dataclass(frozen=True)
class ConnectionLimits:
    # A request's headers arrive within this, or the connection is closed (slowloris).
    header_timeout_s: float = 10.0
    # A request body arrives within this: 4 MiB at ~70 KB/s, a slow edge uplink.
    body_timeout_s: float = 60.0
    # In all (None: from the descriptor limit, keeping room for the log, engines and peers).
    max_connections: int | None = None
    # A body that moves at least this fast (bytes/s) keeps its connection past the body
    # timeout: a 128 kbit/s satellite uplink still uploads a module; a trickle is cut.
    min_body_rate: int = 16 << 10
    # From one source address: a handful of clients behind one NAT, never the whole node.
    max_per_source: int = 64
    # A kept-alive connection may idle this long between an answer and the next request's
    # first byte: longer than aiohttp's client pool keeps one (15 s), so a peer never sends
    # on a connection we are closing; its headers then have header_timeout_s.
    idle_timeout_s: float = 30.0


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
    access: Path | None = None  # who may call the client API, and what they may do
    insecure_open_api: bool = False  # serve every caller as an admin (a lab, never a site)
    api_listen: HostPort | None = None  # the client API on its own address (else on listen)
    tls: TlsConfig | None = None
    limits: ConnectionLimits = ConnectionLimits()
    retain_s: float | None = None  # results and content older than this go (None: kept)
    retain_log_s: float | None = None  # events of jobs ended longer ago go (None: kept)
    log_archive: Path | None = None  # where pruned events are written first (None: nowhere)
    # A new node joining a pruned network: how many seeds must agree on its horizon (0: every
    # seed reached), and how long it asks before it refuses to start (gossip.late).
    join_quorum: int = 0
    join_wait_s: float = 60.0

    @property
    def api_address(self) -> HostPort:
        """Where clients call: `--api-listen`, or the one `--listen` address."""
        return self.api_listen or self.listen


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
    access: Path | None = None,
    insecure_open_api: bool = False,
    api_listen: str | None = None,
    tls: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    retain: str | None = None,
    retain_log: str | None = None,
    log_archive: Path | None = None,
    join_quorum: int = 0,
    join_wait: str | None = None,
) -> NodeConfig:
    """The node's configuration from the `edgebac node` flags as typed; errors name the flag."""
    if network_key is not None and not network_key.is_file():
        raise ConfigError(f"--network-key: {network_key} is not a readable file")
    if access is not None and not access.is_file():
        raise ConfigError(f"--access: {access} is not a readable file")
    config = NodeConfig(
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
        access=access,
        insecure_open_api=insecure_open_api,
        api_listen=parse_host_port(api_listen, "--api-listen", allow_port_zero=True)
        if api_listen
        else None,
        tls=parse_tls(tls, tls_cert, tls_key),
        retain_s=parse_duration(retain) if retain else None,
        retain_log_s=parse_duration(retain_log, "--retain-log") if retain_log else None,
        log_archive=log_archive,
        join_quorum=parse_quorum(join_quorum),
        join_wait_s=parse_duration(join_wait, "--join-wait") if join_wait else 60.0,
        limits=limits_for_tests(os.environ),
    )
    _check_protected(config)
    return config


def parse_quorum(value: int) -> int:
    if value < 0:
        raise ConfigError(f"--join-quorum must be 0 (every seed reached) or more, not {value}")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, flag: str = "--retain") -> float:
    """`90s`, `30m`, `1h`, `7d` -> seconds."""
    match = _DURATION.match(text)
    if match is None or float(match[1]) <= 0:
        raise ConfigError(f"{flag}: {text!r} is not a duration like 30m, 1h or 7d")
    return float(match[1]) * _SECONDS[match[2]]


def parse_tls(mode: str | None, cert: Path | None, key: Path | None) -> TlsConfig | None:
    """`--tls self-signed`, or `--tls-cert FILE --tls-key FILE` (both), or no TLS."""
    if mode is not None and mode != "self-signed":
        raise ConfigError(f"--tls: {mode!r} is not a mode; use --tls self-signed")
    if mode and (cert or key):
        raise ConfigError("--tls self-signed makes its own certificate: drop --tls-cert/--tls-key")
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both files")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{flag}: {path} is not a readable file")
    if mode:
        return TlsConfig(self_signed=True)
    return TlsConfig(cert=cert, key=key) if cert else None


# Test-only knobs: tests cannot wait out a 10 s header timeout, nor open 20,000 sockets.
TEST_LIMITS = {
    "EDGEBAC_TEST_HEADER_TIMEOUT_S": ("header_timeout_s", float),
    "EDGEBAC_TEST_BODY_TIMEOUT_S": ("body_timeout_s", float),
    "EDGEBAC_TEST_MAX_CONNECTIONS": ("max_connections", int),
    "EDGEBAC_TEST_MAX_PER_SOURCE": ("max_per_source", int),
    "EDGEBAC_TEST_IDLE_TIMEOUT_S": ("idle_timeout_s", float),
}


def limits_for_tests(environ: Mapping[str, str]) -> ConnectionLimits:
    """The default connection limits, with what the test-only variables override."""
    changed: dict[str, float | int] = {}
    for variable, (name, kind) in TEST_LIMITS.items():
        if variable in environ:
            try:
                changed[name] = kind(environ[variable])
            except ValueError:
                raise ConfigError(f"{variable}: {environ[variable]!r} is not a number") from None
    return ConnectionLimits(**changed)  # type: ignore[arg-type]


def is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check_protected(config: NodeConfig) -> None:
    """A client API that strangers can reach needs access rules, or the operator saying it
    is meant to be open."""
    address = config.api_address
    if config.access or config.insecure_open_api or is_loopback_host(address.host):
        return
    flag = "--api-listen" if config.api_listen else "--listen"
    raise ConfigError(
        f"{flag} {address} is not a loopback address: give --access FILE (who may call the "
        "API), or --insecure-open-api to serve anyone who can reach it"
    )
