"""Access rules: which clients may call the API, and what each may do (`--access FILE`).

```yaml
clients:
  alice: {key: <client id>, can: [read, submit, cancel]}          # own jobs
  ci:    {token_sha256: <hex>, can: [read, submit]}
  ops:   {key: <client id>, can: [read, submit, cancel, admin], scope: all}
```

`read` covers jobs, logs and results; `submit` and `cancel` what they say; `admin` admission,
raw events and node operations. `scope: own` (the default) limits read and cancel to the
client's own jobs; `scope: all` lifts that. A client is known by its key (it signs each call)
or by a token (`Authorization: Bearer`), of which the file holds only the SHA-256. Pure: the
node reads the file, this module says what it means or exactly what is wrong with it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgebac.errors import ConfigError
from edgebac.textdata import load_json_or_yaml

CAPABILITIES = ("read", "submit", "cancel", "admin")
SCOPES = ("own", "all")
TOKEN_PREFIX = "ebt_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = frozenset({"key", "token_sha256", "can", "scope"})


@dataclass(frozen=True)
class Client:
    name: str
    can: frozenset[str]
    scope_all: bool = False
    key: bytes | None = None
    token_sha256: str | None = None


@dataclass(frozen=True)
class Access:
    clients: Mapping[str, Client]
    by_key: Mapping[bytes, Client]
    by_token: Mapping[str, Client]

    def client_of_key(self, key: bytes) -> Client | None:
        return self.by_key.get(key)

    def client_of_token(self, token: str) -> Client | None:
        return self.by_token.get(token_sha256(token))


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_line(name: str, token: str, can: tuple[str, ...] = ("read", "submit")) -> str:
    """The line to add under `clients:` for a fresh token."""
    return f"  {name}: {{token_sha256: {token_sha256(token)}, can: [{', '.join(can)}]}}"


def parse_access(data: Any, where: str = "access rules") -> Access:
    """The rules in a parsed file; ConfigError naming the client and field at fault."""
    if not isinstance(data, dict) or set(data) - {"clients"}:
        extra = sorted(set(data) - {"clients"}) if isinstance(data, dict) else []
        said = f"unknown key {extra[0]!r}" if extra else "not a mapping"
        raise ConfigError(f"{where}: {said}; the file is `clients: {{NAME: {{...}}, ...}}`")
    entries = data.get("clients") or {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{where}: clients must map names to {{key or token_sha256, can}}")
    clients: dict[str, Client] = {}
    by_key: dict[bytes, Client] = {}
    by_token: dict[str, Client] = {}
    for name, entry in entries.items():
        client = _client(str(name), entry, f"{where}: clients.{name}")
        if client.key is not None:
            if client.key in by_key:
                raise ConfigError(
                    f"{where}: clients.{name}: key is also {by_key[client.key].name}'s"
                )
            by_key[client.key] = client
        if client.token_sha256 is not None:
            if client.token_sha256 in by_token:
                other = by_token[client.token_sha256].name
                raise ConfigError(f"{where}: clients.{name}: token is also {other}'s")
            by_token[client.token_sha256] = client
        clients[client.name] = client
    return Access(clients, by_key, by_token)


def load_access(text: str, where: str) -> Access:
    try:
        data = load_json_or_yaml(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return parse_access(data if data is not None else {}, where)


def _client(name: str, entry: Any, where: str) -> Client:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: a name is 1-64 of letters, digits and _.@- ")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be {{key: <client id>, can: [...]}}")
    extra = sorted(set(entry) - _FIELDS)
    if extra:
        raise ConfigError(f"{where}: unknown field {extra[0]!r} (fields: {', '.join(_FIELDS)})")
    key = _hex_field(entry, "key", where)
    token = _hex_field(entry, "token_sha256", where)
    if key is None and token is None:
        raise ConfigError(f"{where}: needs key (a client id) or token_sha256")
    can = entry.get("can")
    if not isinstance(can, list) or not can or not all(isinstance(c, str) for c in can):
        raise ConfigError(f"{where}.can: a list of {', '.join(CAPABILITIES)}")
    unknown = sorted(set(can) - set(CAPABILITIES))
    if unknown:
        raise ConfigError(
            f"{where}.can: unknown capability {unknown[0]!r}; use {', '.join(CAPABILITIES)}"
        )
    scope = entry.get("scope", "own")
    if scope not in SCOPES:
        raise ConfigError(f"{where}.scope: {scope!r} is not own or all")
    return Client(
        name,
        frozenset(can),
        scope == "all",
        bytes.fromhex(key) if key else None,
        token,
    )


def _hex_field(entry: Mapping[str, Any], field: str, where: str) -> str | None:
    value = entry.get(field)
    if value is None:
        return None
    text = str(value).strip().lower()
    if not _HEX64.match(text):
        raise ConfigError(f"{where}.{field}: 64 hex digits, not {str(value)[:70]!r}")
    return text
