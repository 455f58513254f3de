"""Version vectors in bounded pieces: a digest per bucket first, then the entries that differ.

The vector `{author: seq}` has one entry per author that ever wrote, and anyone may mint
authors: 10,000 one-event identities made every sync message carry 10,000 entries (420 KB),
and sync stopped. So the vector never travels whole. Authors fall into 256 buckets by their
first byte; an exchange opens with the 256 bucket digests (2 KiB, whatever the number of
authors), and only the buckets whose digests differ are then compared, a range of at most
`MAX_ENTRIES` entries a message. Ten thousand authors that both sides hold cost nothing; a new
event costs the entries of its author's bucket (about N/256).

Positions are 32-byte author ids; a range is `lo <= author <= hi` within the buckets of a mask.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from edgebac.gossip.wire import MAX_VV_ENTRIES

BUCKETS = 256
# A wrong "equal" needs a 64-bit collision, and only delays that bucket to its next change.
SUM_BYTES = 8
SUMS_BYTES = BUCKETS * SUM_BYTES
MASK_BYTES = BUCKETS // 8
MAX_ENTRIES = MAX_VV_ENTRIES
ZERO = bytes(32)
END = b"\xff" * 32
ALL = b"\xff" * MASK_BYTES
_EMPTY = bytes(SUM_BYTES)


def whole_range(vv: Mapping[bytes, int] | None = None) -> dict[str, Any]:
    """A `sync` over every author, with these entries (at most MAX_ENTRIES): a tool's or a
    test's way to ask a node for what it holds."""
    return {"t": "sync", "mask": ALL, "lo": ZERO, "hi": END, "vv": dict(vv or {}), "peers": []}


def bucket_sum(entries: Mapping[bytes, int]) -> bytes:
    if not entries:
        return _EMPTY
    digest = hashlib.sha256()
    for author in sorted(entries):
        digest.update(author + entries[author].to_bytes(8, "big"))
    return digest.digest()[:SUM_BYTES]


def in_mask(mask: bytes, bucket: int) -> bool:
    return bool(mask[bucket >> 3] & (0x80 >> (bucket & 7)))


def make_mask(buckets: list[int]) -> bytes:
    out = bytearray(MASK_BYTES)
    for bucket in buckets:
        out[bucket >> 3] |= 0x80 >> (bucket & 7)
    return bytes(out)


def after(position: bytes) -> bytes | None:
    """The position right after `position`; None past the end."""
    if position == END:
        return None
    return (int.from_bytes(position, "big") + 1).to_bytes(32, "big")


def next_start(mask: bytes, position: bytes | None) -> bytes | None:
    """The first position at or after `position` that lies in a bucket of `mask`."""
    if position is None:
        return None
    if in_mask(mask, position[0]):
        return position
    for bucket in range(position[0] + 1, BUCKETS):
        if in_mask(mask, bucket):
            return bytes([bucket]) + bytes(31)
    return None


class VectorIndex:
    """The log's vector cut into buckets, with their digests, kept in step with the vector.

    `update` takes the log's current vector: comparing it with the last one is a C-speed dict
    comparison, and only authors whose seq moved are rehashed, with their buckets.
    """

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}
        self._buckets: list[dict[bytes, int]] = [{} for _ in range(BUCKETS)]
        self._sorted: list[list[bytes] | None] = [[] for _ in range(BUCKETS)]
        self._sums = [_EMPTY] * BUCKETS
        self._dirty: set[int] = set()

    def update(self, vv: Mapping[bytes, int]) -> None:
        if vv == self._seen:
            return
        seen = self._seen
        for author, seq in vv.items():
            if seen.get(author) != seq:
                bucket = author[0]
                if author not in self._buckets[bucket]:
                    self._sorted[bucket] = None
                self._buckets[bucket][author] = seq
                self._dirty.add(bucket)
        self._seen = dict(vv)

    def sums(self) -> bytes:
        for bucket in sorted(self._dirty):
            self._sums[bucket] = bucket_sum(self._buckets[bucket])
        self._dirty.clear()
        return b"".join(self._sums)

    def diff(self, theirs: bytes) -> bytes:
        """The mask of buckets whose digests differ from `theirs`."""
        mine = self.sums()
        size = SUM_BYTES
        return make_mask(
            [
                b
                for b in range(BUCKETS)
                if mine[b * size : (b + 1) * size] != theirs[b * size : (b + 1) * size]
            ]
        )

    def _authors(self, bucket: int) -> list[bytes]:
        authors = self._sorted[bucket]
        if authors is None:
            authors = self._sorted[bucket] = sorted(self._buckets[bucket])
        return authors

    def _walk(self, mask: bytes, lo: bytes, hi: bytes) -> Any:
        for bucket in range(lo[0], hi[0] + 1):
            if not in_mask(mask, bucket):
                continue
            for author in self._authors(bucket):
                if lo <= author <= hi:
                    yield author, self._buckets[bucket][author]

    def entries(
        self, mask: bytes, lo: bytes, hi: bytes, limit: int
    ) -> tuple[dict[bytes, int], bytes]:
        """(our entries in the range, at most `limit`; the end of the range they cover)."""
        out: dict[bytes, int] = {}
        for author, seq in self._walk(mask, lo, hi):
            if len(out) == limit:
                return out, next(reversed(out))
            out[author] = seq
        return out, hi

    def ahead(
        self, remote: Mapping[bytes, int], mask: bytes, lo: bytes, hi: bytes
    ) -> list[tuple[bytes, int]]:
        """(author, the seq `remote` holds) for our authors in the range that `remote` lacks
        events of, in author order: what to send a peer whose entries there are `remote`."""
        return [
            (author, remote.get(author, 0))
            for author, seq in self._walk(mask, lo, hi)
            if seq > remote.get(author, 0)
        ]
