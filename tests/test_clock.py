"""Hybrid logical clock arithmetic, from tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebac.eventlog.clock import (
    COUNTER_MAX,
    ClockSkewError,
    Hlc,
    HybridClock,
    merge,
    tick,
)


@pytest.mark.parametrize(
    ("last", "wall", "expected"),
    [
        (Hlc(0, 0), 100, Hlc(100, 0)),  # wall clock moves: counter resets
        (Hlc(100, 3), 100, Hlc(100, 4)),  # same millisecond: counter counts
        (Hlc(100, 3), 90, Hlc(100, 4)),  # wall clock went back: stay ahead of last
        (Hlc(100, COUNTER_MAX), 100, Hlc(101, 0)),  # counter overflow borrows a millisecond
    ],
)
def test_tick(last, wall, expected):
    assert tick(last, wall) == expected


@pytest.mark.parametrize(
    ("last", "remote", "wall", "expected"),
    [
        (Hlc(100, 0), Hlc(50, 9), 200, Hlc(200, 0)),  # wall clock ahead of both
        (Hlc(100, 2), Hlc(100, 7), 90, Hlc(100, 8)),  # same ms: past the larger counter
        (Hlc(100, 2), Hlc(80, 7), 90, Hlc(100, 3)),  # ours ahead
        (Hlc(80, 2), Hlc(100, 7), 90, Hlc(100, 8)),  # theirs ahead
        (Hlc(80, 2), Hlc(100, COUNTER_MAX), 90, Hlc(101, 0)),
    ],
)
def test_merge(last, remote, wall, expected):
    assert merge(last, remote, wall) == expected


hlcs = st.builds(Hlc, st.integers(0, 1 << 47), st.integers(0, COUNTER_MAX))


@given(hlcs, hlcs, st.integers(0, 1 << 47))
def test_merge_is_after_both(last, remote, wall):
    merged = merge(last, remote, wall)
    assert merged > last
    assert merged > remote
    assert merged.ms >= wall


@given(hlcs)
def test_pack_sorts_like_the_pair(hlc):
    assert Hlc.unpack(hlc.pack()) == hlc
    assert Hlc.unpack(tick(hlc, 0).pack()) > hlc


def test_clock_refuses_remote_time_beyond_max_skew():
    clock = HybridClock(max_skew_ms=1000, wall=lambda: 10_000)
    clock.observe(Hlc(11_000, 0))  # exactly at the limit: fine
    assert clock.now() > Hlc(11_000, 0)
    with pytest.raises(ClockSkewError, match="1001 ms ahead"):
        clock.observe(Hlc(11_001, 0))


def test_clock_is_monotonic_when_wall_clock_goes_back():
    walls = iter([5000, 4000, 3000])
    clock = HybridClock(max_skew_ms=0, wall=lambda: next(walls))
    first, second, third = clock.now(), clock.now(), clock.now()
    assert first < second < third


def test_unpack_refuses_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        Hlc.unpack(-1)
