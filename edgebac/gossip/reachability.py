"""A node that cannot reach its network says so: rate-limited warnings and unreachable peers.

A wrong seed address, another network key or a clock beyond the allowed skew all look the
same from outside: a node that prints its `listening on` line and then nothing. Each such cause
gets one warning line per peer and cause per minute (often enough to be seen in a journal,
rarely enough not to flood it), and the addresses that do not answer are kept with their last
error so `GET /api/v1/node` and `node list` can show them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WARN_EVERY_MS = 60_000
# Refusals a node says on stderr: causes only its operator (or the peer's) can fix.
SAID_REFUSALS = frozenset({"wrong_network_key", "clock_skew"})
MAX_KEYS = 4096  # (peer, cause) pairs remembered; strangers must not grow this without bound


def due(last_ms: float | None, now_ms: float, every_ms: float = WARN_EVERY_MS) -> bool:
    """Whether a warning last given at `last_ms` (None: never) may be given again now.

    A clock that went back (last in the future) counts as "long ago": a warning must not be
    silenced for as long as the clock was wrong.
    """
    return last_ms is None or not 0 <= now_ms - last_ms < every_ms


def alone_after_ms(dead_after: float) -> float:
    """How long with no peer answering before a node says it is alone: when every peer would
    be dead by then anyway, and never sooner than 10 s (a start or a restart of the others)."""
    return max(dead_after, 10_000.0)


class Notices:
    """Warnings about reachability, at most one per (peer, cause) per `every_ms`."""

    def __init__(
        self,
        say: Callable[[str], None],
        clock_ms: Callable[[], float],
        every_ms: float = WARN_EVERY_MS,
    ) -> None:
        self._say = say
        self._clock_ms = clock_ms
        self._every_ms = every_ms
        self._last: dict[tuple[str, str], float] = {}
        self.unreachable: dict[str, str] = {}  # address -> last error, until it answers

    def warn(self, peer: str, cause: str, text: str) -> bool:
        """Say `text` unless the same (peer, cause) was said within the interval."""
        now = self._clock_ms()
        key = (peer, cause)
        if not due(self._last.get(key), now, self._every_ms):
            return False
        if key not in self._last and len(self._last) >= MAX_KEYS:
            del self._last[next(iter(self._last))]
        self._last[key] = now
        self._say(text)
        return True

    def failed(self, address: str, error: str) -> None:
        self.unreachable[address] = error

    def answered(self, address: str) -> None:
        self.unreachable.pop(address, None)

    def body_refused(self, peer: str, code: str, detail: str) -> None:
        """We refused a body before reading it: say so when the sender can fix the cause."""
        if code in SAID_REFUSALS:
            self.warn(peer, code, f"refused gossip from {peer}: {detail}")

    def exchange_failed(self, address: str, exc: Any, expected: bool, is_seed: bool) -> None:
        """An exchange failed: a peer that refused us for a fixable cause, a seed that does not
        answer, or (`expected` False) a bug, which must be seen but must not end any loop."""
        name = type(exc).__name__
        if not expected:
            self.warn(address, f"error {name}", f"gossip with {address} failed: {name}: {exc}")
            return
        self.failed(address, str(exc))
        code = getattr(exc, "code", None)
        if code in SAID_REFUSALS:
            detail = getattr(exc, "detail", str(exc))
            self.warn(address, code, f"{address} refuses our gossip ({code}): {detail}")
        elif getattr(exc, "unreachable", False) and is_seed:
            self.warn(address, "unreachable", f"seed {exc}")

    def events_refused(self, rejection: Any) -> None:
        """Events dated beyond the allowed skew (the author's clock runs ahead of ours)."""
        author = (rejection.author or b"").hex()[:12]
        self.warn(author, "event_clock_skew", f"refused events of {author}: {rejection}")

    def check_alone(self, silent_ms: float, dead_after: float) -> None:
        """Someone to talk to, and no one answered for a while: say so."""
        if silent_ms > alone_after_ms(dead_after):
            self.warn("", "alone", f"alone: no peer answered in {silent_ms / 1000:.0f} s")
