"""What a node joining late takes from its peers instead of all history: their horizon and
the events they kept below it (pure: no I/O).

A peer that pruned its log holds, for each chain pruning touched, the chain's newest pruned
seq and id (the horizon's heads) and, below them, only the events pruning kept (announcements,
losses, the events of jobs still of use). A joiner takes the horizon and those kept events, and
from the heads on syncs as any node does: each chain's next event must name its head's id, so
everything after the horizon is checked link by link, as ever.

Peers are compared by `Summary`: the horizon without its cut (nodes prune the same jobs at
cuts a pruner's period apart; the cut decides what a later prune takes, not the state) and a
digest of the kept events below its heads. Two peers holding the same events below the same
horizon give the same summary; a joiner adopts one only when the peers it asks agree on it,
and then checks that what it was sent is exactly what the summary names (`problems`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import msgpack

from edgebac.eventlog.clock import ZERO
from edgebac.eventlog.encoding import Event
from edgebac.eventlog.horizon import Horizon, pack
from edgebac.eventlog.types import FIRST_TYPES

KEPT_CONTEXT = b"edgebac/kept-below/v1\x00"


class AdoptRefused(ValueError):
    """What peers sent a joiner is not what they agreed on: nothing of it is written."""


@dataclass(frozen=True, slots=True)
class Summary:
    """What a peer says it holds below its horizon, as joiners compare it."""

    horizon: bytes  # `comparable(horizon)`
    kept: bytes  # `kept_digest` of the kept events below the horizon's heads
    count: int  # how many there are


def comparable(horizon: Horizon) -> bytes:
    """The horizon as peers compare it: packed, with its cut left out."""
    return pack(replace(horizon, cut=ZERO))


def kept_digest(rows: Iterable[tuple[bytes, int, bytes]]) -> bytes:
    """sha256 over the (author, seq, id) of kept events, in (author, seq) order."""
    digest = hashlib.sha256(KEPT_CONTEXT)
    for author, seq, event_id in sorted(rows):
        digest.update(msgpack.packb([author, seq, event_id], use_bin_type=True))
    return digest.digest()


def below_heads(horizon: Horizon, author: bytes, seq: int) -> bool:
    """Whether (author, seq) is below the horizon's head of its chain: kept-below ground."""
    head = horizon.heads.get(author)
    return head is not None and seq < head.seq


def problems(horizon: Horizon, events: Sequence[Event], summary: Summary) -> list[str]:
    """Why `events` (signature-checked) are not the kept events below `horizon` that
    `summary` names; [] when they are exactly those."""
    found: list[str] = []
    if comparable(horizon) != summary.horizon:
        found.append("the horizon is not the one the peers agreed on")
    chains: dict[bytes, list[Event]] = {}
    for event in events:
        if not below_heads(horizon, event.author, event.seq):
            found.append(f"{event.author.hex()[:12]} seq {event.seq} is not below its head")
        chains.setdefault(event.author, []).append(event)
    for chain in chains.values():
        found += _chain_problems(sorted(chain, key=lambda e: e.seq))
    missing = set(horizon.heads) - set(chains)
    if missing:
        found.append(f"{len(missing)} pruned chains have no kept announcement")
    rows = [(e.author, e.seq, e.id) for e in events]
    if len(rows) != summary.count or kept_digest(rows) != summary.kept:
        found.append(
            f"{len(rows)} events are not the {summary.count} kept events the peers agreed on"
        )
    return found


def _chain_problems(chain: list[Event]) -> list[str]:
    """One author's kept events, in seq order: from its announcement, linked where adjacent
    (gaps are pruning's), and in time order."""
    name = chain[0].author.hex()[:12]
    found: list[str] = []
    if chain[0].seq != 1 or chain[0].type not in FIRST_TYPES:
        found.append(f"{name}: the chain's first kept event is not its announcement")
    for before, after in itertools.pairwise(chain):
        if after.seq == before.seq:
            found.append(f"{name} seq {after.seq} given twice")
        elif after.seq == before.seq + 1 and after.prev != before.id:
            found.append(f"{name} seq {after.seq} does not name seq {before.seq}")
        elif after.hlc <= before.hlc:
            found.append(f"{name} seq {after.seq}: its hlc is not after seq {before.seq}'s")
    return found
