"""The operator's policy file and the bid/accept hooks it may name.

    # policy.yaml (or .json), given with --policy FILE
    engines: [docker, wasm, noop]     # executors this node offers
    images: ["edgebac-test/*"]        # docker images jobs may use (fnmatch patterns)
    modules: ["*"]                    # wasm module sources jobs may use
    paths: [/srv/data]                # local folders jobs may read as inputs
    urls: ["*", files.lan, 10.1.0.0/16]  # where http(s) inputs may connect (default: public)
    network: false                    # may jobs ask for full network access
    pull: false                       # may missing docker images be pulled (a local registry)
    cost: 1                           # advertised in bids; lower wins ties
    capabilities: [NET_BIND_SERVICE]  # Linux capabilities docker jobs get beyond the base set
    user: "1000:1000"                 # docker jobs run as this user (default: the image's)
    clients: [3f2a...64 hex digits]   # whose jobs run here: client ids, vouched names
                                      # (unsigned, token:NAME@<requester id, 64 hex digits>)
    vouched: true                     # may jobs run that a requester vouched for (unsigned)
    bid_hook: {exec: /usr/local/bin/approve-job}      # spec JSON on stdin; exit 0 to bid
    accept_hook: {http: "http://127.0.0.1:9000/ok"}   # POST {job, bid}; 2xx to accept

A hook that fails, times out or cannot be run says no, with that reason: a broken hook must
never let a job through that the operator meant to check.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgebac.errors import ConfigError
from edgebac.runtime.providers.destinations import PUBLIC, Destinations
from edgebac.scheduler.compute import NodePolicy
from edgebac.scheduler.requester import Verdict
from edgebac.textdata import load_json_or_yaml

HOOK_TIMEOUT_S = 10.0
ENGINES = ("docker", "wasm", "noop")
_KEYS = {
    "engines",
    "images",
    "modules",
    "paths",
    "network",
    "pull",
    "cost",
    "clients",
    "vouched",
    "bid_hook",
    "accept_hook",
    "urls",
    "capabilities",
    "user",
}
# Every Linux capability (capabilities(7)), so a misspelt one is refused, not silently ignored.
_CAPABILITY_NAMES = """AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE
    CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE
    MAC_ADMIN MAC_OVERRIDE MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP
    SETGID SETPCAP SETUID SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT
    SYS_PTRACE SYS_RAWIO SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM"""
CAPABILITIES = frozenset(_CAPABILITY_NAMES.split())


@dataclass(frozen=True)
class Hook:
    command: str | None = None
    url: str | None = None
    timeout_s: float = HOOK_TIMEOUT_S

    async def ask(self, payload: dict[str, Any]) -> Verdict:
        try:
            if self.command is not None:
                return await asyncio.wait_for(self._exec(payload), self.timeout_s)
            return await asyncio.wait_for(self._http(payload), self.timeout_s)
        except TimeoutError:
            return Verdict(False, f"policy hook timed out after {self.timeout_s:g} s")
        except OSError as exc:
            return Verdict(False, f"policy hook could not run: {exc}")

    async def _exec(self, payload: dict[str, Any]) -> Verdict:
        assert self.command is not None
        process = await asyncio.create_subprocess_shell(
            self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await process.communicate(json.dumps(payload).encode())
        except asyncio.CancelledError:
            process.kill()
            raise
        if process.returncode == 0:
            return Verdict(True)
        said = (err or out).decode(errors="replace").strip().splitlines()
        return Verdict(False, said[0][:200] if said else f"hook exited {process.returncode}")

    async def _http(self, payload: dict[str, Any]) -> Verdict:
        import aiohttp

        assert self.url is not None
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, json=payload) as response,
        ):
            if 200 <= response.status < 300:
                return Verdict(True)
            text = (await response.text()).strip().splitlines()
            return Verdict(False, text[0][:200] if text else f"hook answered {response.status}")


@dataclass(frozen=True)
class Policy:
    node: NodePolicy = field(default_factory=NodePolicy)
    bid_hook: Hook | None = None
    accept_hook: Hook | None = None


def _hook(value: Any, key: str, path: Path) -> Hook | None:
    if value is None:
        return None
    if isinstance(value, dict) and set(value) <= {"exec", "http", "timeout_s"}:
        timeout = value.get("timeout_s", HOOK_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"{path}: {key}.timeout_s: {timeout!r} is not a number of seconds")
        if isinstance(value.get("exec"), str) and "http" not in value:
            return Hook(command=value["exec"], timeout_s=float(timeout))
        if isinstance(value.get("http"), str) and "exec" not in value:
            return Hook(url=value["http"], timeout_s=float(timeout))
    raise ConfigError(f"{path}: {key} must be {{exec: COMMAND}} or {{http: URL}}")


def _strings(data: dict[str, Any], key: str, path: Path, default: tuple[str, ...]) -> tuple:
    value = data.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{path}: {key} must be a list of strings")
    return tuple(value)


def _engines(data: dict[str, Any], path: Path) -> frozenset[str]:
    """The engines offered; a misspelt one (`dockr`) is refused, not silently never offered."""
    engines = _strings(data, "engines", path, ENGINES)
    for name in engines:
        if name not in ENGINES:
            raise ConfigError(
                f"{path}: engines: {name!r} is not an engine (one of {', '.join(ENGINES)})"
            )
    return frozenset(engines)


def _paths(data: dict[str, Any], path: Path) -> tuple[str, ...]:
    paths = _strings(data, "paths", path, ())
    for item in paths:
        if not item.startswith("/"):
            raise ConfigError(f"{path}: paths: {item!r} is not an absolute path")
    return paths


def _urls(data: dict[str, Any], path: Path) -> tuple[str, ...]:
    """Checked here so a typo stops the node at start, not every http input later."""
    urls = _strings(data, "urls", path, (PUBLIC,))
    try:
        Destinations.parse(urls)
    except ValueError as exc:
        raise ConfigError(f"{path}: urls: {exc}") from None
    return urls


def _cost(data: dict[str, Any], path: Path) -> float | None:
    cost = data.get("cost")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float)):
        raise ConfigError(f"{path}: cost: {cost!r} is not a number")
    if cost is not None and not 0 <= cost < float("inf"):
        raise ConfigError(f"{path}: cost: {cost!r} is not a number of 0 or more")
    return cost


def _capabilities(data: dict[str, Any], path: Path) -> tuple[str, ...]:
    """Capability names as capabilities(7) spells them, `CAP_` prefix optional."""
    names = []
    for item in _strings(data, "capabilities", path, ()):
        name = item.strip().upper().removeprefix("CAP_")
        if name not in CAPABILITIES:
            raise ConfigError(f"{path}: capabilities: {item!r} is not a Linux capability")
        names.append(name)
    return tuple(names)


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a user or group, as useradd allows


def _user(data: dict[str, Any], path: Path) -> str | None:
    """A user name or uid, with an optional `:group`, as `docker run --user` takes it."""
    user = data.get("user")
    if user is None:
        return None
    if isinstance(user, int) and not isinstance(user, bool) and user >= 0:
        return str(user)
    parts = user.split(":") if isinstance(user, str) else []
    if not 1 <= len(parts) <= 2 or not all(part and _NAME.fullmatch(part) for part in parts):
        raise ConfigError(f"{path}: user: {user!r} is not a user (a name or uid, :group optional)")
    return user


HEX = frozenset("0123456789abcdef")


def _clients(data: dict[str, Any], path: Path) -> frozenset[str] | None:
    """Client ids (64 hex digits, as `edgebac client id` prints) or names a requester vouches
    for (`unsigned`, `token:NAME@REQUESTER`); absent: any client. A malformed id is refused,
    not silently never matched."""
    if "clients" not in data:
        return None
    names = set()
    for item in _strings(data, "clients", path, ()):
        name = _client_name(item.strip())
        if name is None:
            raise ConfigError(
                f"{path}: clients: {item!r} is not a client id (64 hex digits, as "
                "`edgebac client id` prints) nor a vouched name (unsigned, "
                "token:NAME@REQUESTER with the requester's id: 64 hex digits)"
            )
        names.add(name)
    return frozenset(names)


def _client_name(name: str) -> str | None:
    """`name` as jobs carry it (hex ids in lower case), or None if it cannot name a client."""
    if len(name) == 64 and set(name.lower()) <= HEX:
        return name.lower()
    if name.startswith("token:"):  # as a requester vouches for a token caller
        token, at, requester = name.partition(":")[2].rpartition("@")
        if not token or not at or len(requester) != 64 or not set(requester.lower()) <= HEX:
            return None
        return f"token:{token}@{requester.lower()}"
    return name if name == "unsigned" or ":" in name else None


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return Policy()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--policy: {path}: {exc.strerror}") from None
    try:
        data = load_json_or_yaml(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a policy is a map of settings")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}")
    for flag in ("network", "pull", "vouched"):
        if not isinstance(data.get(flag, flag == "vouched"), bool):
            raise ConfigError(f"{path}: {flag} must be true or false")
    node = NodePolicy(
        engines=_engines(data, path),
        images=_strings(data, "images", path, ("*",)),
        modules=_strings(data, "modules", path, ("*",)),
        paths=_paths(data, path),
        urls=_urls(data, path),
        network=data.get("network", False),
        pull=data.get("pull", False),
        hook="bid_hook" in data,
        cost=_cost(data, path),
        clients=_clients(data, path),
        vouched=data.get("vouched", True),
        capabilities=_capabilities(data, path),
        user=_user(data, path),
    )
    return Policy(
        node,
        _hook(data.get("bid_hook"), "bid_hook", path),
        _hook(data.get("accept_hook"), "accept_hook", path),
    )


def narrowed(policy: Policy, offered: Mapping[str, object]) -> Policy:
    """The policy with only the engines this node really offers: so that a node without
    Docker declines docker jobs ("engine disabled") instead of bidding and failing them."""
    engines = policy.node.engines & frozenset(offered)
    return replace(policy, node=replace(policy.node, engines=engines))
