"""A node that cannot reach its network says so: rate-limited warnings and unreachable peers.

A wrong seed address, another network key or a clock beyond the allowed skew all look the
same from outside: a node that prints its `listening on` line and then nothing. Each such cause
gets one warning line per peer and cause per minute (often enough to be seen in a journal,
rarely enough not to flood it), and the addresses that do not answer are kept with their last
error so `GET /api/v1/node` and `node list` can show them.
"""

from __future__ import annotations

from collections.abc import Callable

WARN_EVERY_MS = 60_000
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
