"""The log's horizon: what pruning removed from it, signed by the node that pruned.

Pruning deletes the events of jobs that ended before a time (the cut); nothing else goes, so
announcements, losses and every job still of use stay. What the projection drew from the
events that went, and cannot draw again, is carried here instead: each author's newest hlc
among them (when it was last heard from), each node's completed and failed executions in the
pruned jobs (its reputation), and each author's highest pruned seq and that event's id (so
`edgebac log verify` tells a gap pruning left from one it did not, and checks each chain from
there on). The record is cumulative: a later prune adds to the one before.

A node starts a whole-log fold from it (`Projection.start_from`), so a state folded from the
kept events and the horizon is the state the node had when it pruned. Signed by the node's
key, behind a domain tag of its own, so no edit of the file passes for the node's word.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edgebac.eventlog.clock import ZERO, Hlc

HORIZON_CONTEXT = b"edgebac/log-horizon/v1\x00"
HORIZON_VERSION = 1


class HorizonError(ValueError):
    """A stored horizon that is not what its node signed, or not of this shape."""


@dataclass(frozen=True, slots=True)
class Head:
    seq: int  # the author's highest pruned seq
    id: bytes  # that event's id: the next kept event of the chain names it as prev


@dataclass(frozen=True, slots=True)
class Horizon:
    cut: Hlc  # the events of jobs ended before it went (the newest prune's cut)
    events: int = 0  # how many went, in every prune so far
    jobs: int = 0
    heads: Mapping[bytes, Head] = field(default_factory=dict)
    heard: Mapping[bytes, Hlc] = field(default_factory=dict)  # author -> newest pruned hlc
    reputation: Mapping[bytes, tuple[int, int]] = field(default_factory=dict)

    def gap_allowed(self, author: bytes, seq: int) -> bool:
        """A missing event of `author` at `seq` is one pruning took."""
        head = self.heads.get(author)
        return head is not None and seq <= head.seq


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one prune removed: the rows' (author, seq, id, hlc), and the jobs' reputations."""

    rows: tuple[tuple[bytes, int, bytes, int], ...]
    jobs: int
    reputation: Mapping[bytes, tuple[int, int]]


def extend(old: Horizon | None, cut: Hlc, pruned: Pruned) -> Horizon:
    """The horizon after a prune at `cut` removed `pruned` (pure)."""
    old = old or Horizon(ZERO)
    heads = dict(old.heads)
    heard = dict(old.heard)
    for author, seq, event_id, hlc in pruned.rows:
        head = heads.get(author)
        if head is None or seq > head.seq:
            heads[author] = Head(seq, event_id)
        heard[author] = max(heard.get(author, ZERO), Hlc.unpack(hlc))
    reputation = dict(old.reputation)
    for node, (completed, failed) in pruned.reputation.items():
        c, f = reputation.get(node, (0, 0))
        reputation[node] = (c + completed, f + failed)
    return Horizon(
        max(old.cut, cut),
        old.events + len(pruned.rows),
        old.jobs + pruned.jobs,
        heads,
        heard,
        {node: rep for node, rep in reputation.items() if any(rep)},
    )


def _plain(h: Horizon) -> list[Any]:
    return [
        HORIZON_VERSION,
        h.cut.pack(),
        h.events,
        h.jobs,
        sorted([a, head.seq, head.id] for a, head in h.heads.items()),
        sorted([a, hlc.pack()] for a, hlc in h.heard.items()),
        sorted([n, c, f] for n, (c, f) in h.reputation.items()),
    ]


def pack(h: Horizon) -> bytes:
    return msgpack.packb(_plain(h), use_bin_type=True)


def unpack(body: bytes) -> Horizon:
    try:
        version, cut, events, jobs, heads, heard, reputation = msgpack.unpackb(
            body, raw=False, use_list=True
        )
        if version != HORIZON_VERSION:
            raise HorizonError(f"version {version}, this edgebac reads {HORIZON_VERSION}")
        return Horizon(
            Hlc.unpack(cut),
            int(events),
            int(jobs),
            {bytes(a): Head(int(seq), bytes(i)) for a, seq, i in heads},
            {bytes(a): Hlc.unpack(hlc) for a, hlc in heard},
            {bytes(n): (int(c), int(f)) for n, c, f in reputation},
        )
    except HorizonError:
        raise
    except Exception as exc:  # any other shape: not a horizon this code wrote
        raise HorizonError(f"does not decode ({type(exc).__name__}: {exc})") from None


def sign(key: SigningKey, body: bytes) -> bytes:
    return key.sign(HORIZON_CONTEXT + body).signature


def opened(body: bytes, signature: bytes, signer: bytes) -> Horizon:
    """The horizon `body` holds, if `signer` signed it; else HorizonError."""
    try:
        VerifyKey(signer).verify(HORIZON_CONTEXT + body, signature)
    except (BadSignatureError, ValueError, TypeError):
        raise HorizonError("its signature is not this node's") from None
    return unpack(body)
