"""The arithmetic of the node's connection limits: pure, so it is tested from tables.

Who a connection counts against, how many the node holds, which one gives way when it is full,
when a connection's time is up, and how often a complaint may be printed. No clock or socket
in here: the listener passes `now` in and acts on the answers.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

K = TypeVar("K", bound=Hashable)

# Descriptors kept back from client connections: the event log (SQLite's db, WAL and shm per
# reader), engines (Docker's connection pool, wasm modules), outgoing peer connections (gossip's
# pool of 64, block fetches), staging files, stdio. A quarter, and never less than 128.
RESERVE_MIN = 128
# Past this, more connections only cost memory (~10 KB each in aiohttp) without serving more.
MAX_DEFAULT = 16_384
MIN_CONNECTIONS = 16


def default_max_connections(nofile: int) -> int:
    """The cap on connections in all, from the soft RLIMIT_NOFILE (negative: unlimited)."""
    if nofile < 0:
        return MAX_DEFAULT
    reserve = max(RESERVE_MIN, nofile // 4)
    return max(MIN_CONNECTIONS, min(nofile - reserve, MAX_DEFAULT))


def source_key(host: str) -> str:
    """Whom a connection counts against: its IPv4 address, or its IPv6 /64 (one site has a
    whole /64, so counting single IPv6 addresses would cap nobody)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class Admission(Generic[K]):
    """Connections held, in all and per source, and which are still waiting for headers.

    A full node lets the connection that has waited longest for its headers go (it has sent
    nothing worth keeping) rather than refuse the newcomer: one client holding every slot with
    silent sockets cannot lock others out. Connections that are being answered never go.
    """

    max_total: int
    max_per_source: int
    _source: dict[K, str] = field(default_factory=dict)
    _per_source: Counter[str] = field(default_factory=Counter)
    _waiting: dict[K, None] = field(default_factory=dict)  # insertion order: oldest first

    @property
    def total(self) -> int:
        return len(self._source)

    def of(self, source: str) -> int:
        return self._per_source[source]

    def admit(self, key: K, source: str) -> tuple[bool, K | None]:
        """(admitted, the connection to close to make room for it, if any)."""
        if self._per_source[source] >= self.max_per_source:
            return False, None
        evicted = None
        if len(self._source) >= self.max_total:
            evicted = next(iter(self._waiting), None)
            if evicted is None:
                return False, None
            self.release(evicted)
        self._source[key] = source
        self._per_source[source] += 1
        self._waiting[key] = None
        return True, evicted

    def waiting(self, key: K, waiting: bool) -> None:
        """Mark a held connection as waiting for a request's headers (again: last in line)."""
        self._waiting.pop(key, None)
        if waiting and key in self._source:
            self._waiting[key] = None

    def release(self, key: K) -> None:
        """Forget a connection; releasing one twice is harmless (close paths overlap)."""
        source = self._source.pop(key, None)
        self._waiting.pop(key, None)
        if source is not None:
            self._per_source[source] -= 1
            if not self._per_source[source]:
                del self._per_source[source]


Phase = Literal["headers", "body", "answering", "idle"]


MIN_BODY_RATE = 16 << 10  # bytes/s: a slow satellite uplink (128 kbit/s) still uploads


@dataclass
class Phases:
    """One connection's deadlines: headers within `header_s` of opening, or of the first byte
    after an answer (kept alive, a connection idles `idle_s` at most); a body within `body_s`
    of its headers, plus a second for every `min_body_rate` bytes that came (a large upload
    over a slow link keeps its connection while it moves; a trickle does not); an answer (a
    long poll, a log stream) has no deadline, but a client that reads nothing of it while it
    waits to be sent has `body_s` (a stalled reader holds a connection as surely as a trickled
    body)."""

    header_s: float
    body_s: float
    idle_s: float
    min_body_rate: int = MIN_BODY_RATE
    phase: Phase = "headers"
    deadline: float | None = None
    body_started: float = 0.0
    body_bytes: int = 0
    stalled_until: float | None = None  # writes paused (the client reads nothing) until then

    @property
    def next_check(self) -> float | None:
        times = [t for t in (self.deadline, self.stalled_until) if t is not None]
        return min(times) if times else None

    def writes_paused(self, now: float) -> None:
        self.stalled_until = now + self.body_s

    def writes_resumed(self) -> None:
        self.stalled_until = None

    def opened(self, now: float) -> None:
        self.phase, self.deadline = "headers", now + self.header_s

    def received(self, now: float, size: int = 0) -> bool:
        """`size` bytes came in; True if that moved the deadline later (a request's headers
        began on an idle connection, or a body is moving)."""
        if self.phase == "body" and size:
            self.body_bytes += size
            self.deadline = self.body_started + self.body_s + self.body_bytes / self.min_body_rate
            return True
        if self.phase != "idle":
            return False
        self.opened(now)
        return True

    def request(self, now: float, body_whole: bool) -> None:
        """A request's headers are in; its body is whole already, or has `body_s` to come."""
        if body_whole:
            self.phase, self.deadline = "answering", None
        else:
            self.phase, self.deadline = "body", now + self.body_s
            self.body_started, self.body_bytes = now, 0

    def answered(self, now: float) -> None:
        self.phase, self.deadline = "idle", now + self.idle_s

    def expired(self, now: float, body_whole: bool) -> bool:
        """At a timer: True if the connection must be cut. A body that is whole by now moves
        the connection on to answering."""
        if self.stalled_until is not None and now >= self.stalled_until:
            return True
        if self.deadline is None or now < self.deadline:
            return False
        if self.phase == "body" and body_whole:
            self.phase, self.deadline = "answering", None
            return False
        return True


@dataclass
class RateLimited:
    """At most one line per `interval_s`; the next line says how many were held back."""

    interval_s: float
    _last: float | None = None
    _held: int = 0

    def allow(self, now: float) -> int | None:
        """None: stay quiet; else how many were held back since the last line."""
        if self._last is not None and now - self._last < self.interval_s:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held
