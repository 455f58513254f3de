"""Hybrid logical clock: wall-clock milliseconds plus a counter, for one total order across authors.

The arithmetic lives in pure functions (`tick`, `merge`) so it can be tested from tables; the
`HybridClock` class only holds the last value and reads the wall clock.

`wall_clock_ms` is the one wall clock of a node (its log, envelope, membership and runner).
For tests only, `EDGEBAC_TEST_CLOCK_OFFSET_MS` shifts it by that many milliseconds, so a real
node process can run with a clock that is wrong by a known amount (as `faketime` would, without
its LD_PRELOAD). It is read once, at import; it is not a setting for operators.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

COUNTER_BITS = 16
COUNTER_MAX = (1 << COUNTER_BITS) - 1
# 48 bits of milliseconds reach the year 10889; the packed value fits msgpack's uint64.
MS_MAX = (1 << 48) - 1


class ClockSkewError(ValueError):
    """A remote timestamp is further ahead of our wall clock than we tolerate."""


@dataclass(frozen=True, order=True, slots=True)
class Hlc:
    ms: int
    counter: int = 0

    def pack(self) -> int:
        """One integer that sorts like the pair: what goes on the wire and in SQL."""
        return (self.ms << COUNTER_BITS) | self.counter

    @classmethod
    def unpack(cls, packed: int) -> Hlc:
        if not 0 <= packed <= (MS_MAX << COUNTER_BITS | COUNTER_MAX):
            raise ValueError(f"hlc {packed} out of range")
        return cls(packed >> COUNTER_BITS, packed & COUNTER_MAX)

    def __str__(self) -> str:
        return f"{self.ms}.{self.counter}"


ZERO = Hlc(0, 0)


def _bump(ms: int, counter: int) -> Hlc:
    # A counter overflow borrows the next millisecond instead of wrapping, keeping order strict.
    if counter > COUNTER_MAX:
        return Hlc(ms + 1, 0)
    return Hlc(ms, counter)


def tick(last: Hlc, wall_ms: int) -> Hlc:
    """The timestamp of a new local event: after `last`, and at least the wall clock."""
    if wall_ms > last.ms:
        return Hlc(wall_ms, 0)
    return _bump(last.ms, last.counter + 1)


def merge(last: Hlc, remote: Hlc, wall_ms: int) -> Hlc:
    """Our clock after seeing `remote`: later than both, so our next events sort after it."""
    top = max(last.ms, remote.ms, wall_ms)
    if top == last.ms == remote.ms:
        return _bump(top, max(last.counter, remote.counter) + 1)
    if top == last.ms:
        return _bump(top, last.counter + 1)
    if top == remote.ms:
        return _bump(top, remote.counter + 1)
    return Hlc(top, 0)


def skew_ms(remote: Hlc, wall_ms: int) -> int:
    """How far `remote` runs ahead of our wall clock (0 or negative: not ahead)."""
    return remote.ms - wall_ms


TEST_OFFSET_ENV = "EDGEBAC_TEST_CLOCK_OFFSET_MS"


def clock_offset_ms(environ: Mapping[str, str] = os.environ) -> int:
    """The test-only shift of the wall clock; 0 unless the variable holds an integer."""
    text = environ.get(TEST_OFFSET_ENV, "").strip()
    try:
        return int(text) if text else 0
    except ValueError:
        raise ValueError(f"{TEST_OFFSET_ENV}: {text!r} is not an integer (ms)") from None


_OFFSET_NS = clock_offset_ms() * 1_000_000


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, as this node's clock says (test offset included)."""
    return (time.time_ns() + _OFFSET_NS) // 1_000_000


class HybridClock:
    """The node's clock. Only the log writer calls it, so it needs no lock."""

    def __init__(self, max_skew_ms: int, wall: Callable[[], int] = wall_clock_ms) -> None:
        self.max_skew_ms = max_skew_ms
        self._wall = wall
        self._last = ZERO

    @property
    def last(self) -> Hlc:
        return self._last

    def wall_ms(self) -> int:
        return self._wall()

    def now(self) -> Hlc:
        self._last = tick(self._last, self._wall())
        return self._last

    def advance_to(self, seen: Hlc) -> None:
        """Move past a timestamp already accepted (held events), without the skew check."""
        self._last = merge(self._last, seen, self._wall())

    def observe(self, remote: Hlc) -> None:
        """Move past a remote timestamp; refuse one too far in the future."""
        wall = self._wall()
        ahead = skew_ms(remote, wall)
        if ahead > self.max_skew_ms:
            raise ClockSkewError(
                f"timestamp {remote} is {ahead} ms ahead of local time "
                f"(max skew {self.max_skew_ms} ms)"
            )
        self._last = merge(self._last, remote, wall)
