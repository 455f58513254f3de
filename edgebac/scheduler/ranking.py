"""Deterministic bid ranking: the same bids and log give the same winners on every replay.

Order, best first: nodes that have not failed this job yet; data locality (the node holds an
input); fit, as the most free memory then cpu, disk and gpu (spreading load, so a job lands where
it leaves the most room); reputation from past results in the log; lower cost; node id.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from edgebac.scheduler.state import RESOURCE_KEYS, Bid


def reputation_score(completed: int, failed: int) -> Fraction:
    """Share of good results, with one imagined success and failure so new nodes start at 1/2."""
    return Fraction(completed + 1, completed + failed + 2)


def rank_key(bid: Bid, reputation: tuple[int, int], failed_here: int) -> tuple[Any, ...]:
    fit = tuple(
        -bid.free.get(key, 0) for key in ("memory_bytes", "cpu_millis", "disk_bytes", "gpu")
    )
    return (
        failed_here,
        not bid.local_data,
        fit,
        -reputation_score(*reputation),
        bid.cost,
        bid.node,
    )


def rank(
    bids: list[Bid],
    reputations: Mapping[bytes, tuple[int, int]],
    failed_here: Mapping[bytes, int],
) -> list[Bid]:
    return sorted(
        bids,
        key=lambda b: rank_key(b, reputations.get(b.node, (0, 0)), failed_here.get(b.node, 0)),
    )


def shortfall(free: Mapping[str, int], wanted: Mapping[str, int]) -> list[str]:
    """The resource keys where `free` is below what is `wanted`."""
    return [key for key in RESOURCE_KEYS if wanted.get(key, 0) > free.get(key, 0)]
