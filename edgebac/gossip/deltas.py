"""Pushes as deltas (#17): an event deflated against its author's previous event.

A push carries about one event, and one event deflates poorly on its own (a 600-byte job event
to ~470 bytes with the preset dictionary), too little to pay for the seal, the envelope and the
ack. But a push goes to peers in step with the event's author (`thin.Recent`): they hold the
author's previous event, and so does the pusher. Deflated with that event as the preset
dictionary (after ZDICT_V1), an event costs little more than what is new in it: its seq, time,
`prev`, signature and the values that changed (a job-like event: ~600 -> ~200 bytes).

    push {t, events: [], deltas: [whole raw | [author, seq, deflated], ...], relay, to, k}

Items keep the batch's order (the relayers' split salts on its first event). Only peers that
said they read deltas (`d: 1` on their sums or diff) are sent them; others get whole events.
A receiver drops what it holds by (author, seq) before inflating anything; a delta whose base
it lacks is a gap (it pulls from the pusher); nothing inflates past MAX_EVENT_BYTES an event or
`limit` a message, and what is rebuilt is verified like any event: a wrong base only makes
bytes that fail their signature.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from edgebac.eventlog.chain import Reason, Rejection
from edgebac.eventlog.encoding import MAX_EVENT_BYTES, Event, peek_key
from edgebac.gossip.thin import HELD
from edgebac.gossip.wire import ProtocolError
from edgebac.gossip.zdict import ZDICT_V1

WINDOW = 1 << 15  # zlib refers back at most 32 KiB: a longer dictionary's last 32 KiB count
LEVEL = 6
RAW_DEFLATE = -15
Base = Callable[[bytes, int], Awaitable[bytes | None]]  # (author, seq) -> its raw, if held


class Bases:
    """The raws of the events stored last, by (author, seq), up to `max_bytes` in all: what
    deltas are made and read against (a relayer's and a receiver's author's previous event),
    found without a read of the log. Larger events are read when needed."""

    def __init__(self, max_bytes: int = 8 << 20, max_event: int = 64 << 10) -> None:
        self.max_bytes = max_bytes
        self.max_event = max_event
        self.size = 0
        self._raws: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()

    def stored(self, events: Iterable[Event]) -> None:
        for event in events:
            if len(event.raw) <= self.max_event and (event.author, event.seq) not in self._raws:
                self._raws[(event.author, event.seq)] = event.raw
                self.size += len(event.raw)
        while self.size > self.max_bytes:
            self.size -= len(self._raws.popitem(last=False)[1])

    def get(self, author: bytes, seq: int) -> bytes | None:
        return self._raws.get((author, seq))


def _dictionary(base: bytes) -> bytes:
    return (ZDICT_V1 + base)[-WINDOW:]


def deflate_against(raw: bytes, base: bytes) -> bytes:
    deflater = zlib.compressobj(LEVEL, zlib.DEFLATED, RAW_DEFLATE, zdict=_dictionary(base))
    return deflater.compress(raw) + deflater.flush()


def inflate_against(blob: bytes, base: bytes, limit: int = MAX_EVENT_BYTES) -> bytes | None:
    """`blob` inflated against `base`; None if it is not a whole deflate stream within `limit`."""
    inflater = zlib.decompressobj(RAW_DEFLATE, zdict=_dictionary(base))
    try:
        out = inflater.decompress(blob, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        return None
    return out


async def encode(raws: Sequence[bytes], base: Base) -> list[Any]:
    """The `deltas` of a push: each event as a delta against the one before it of its author
    (from this batch, or held), or whole when that is not smaller."""
    built: dict[tuple[bytes, int], bytes] = {}
    items: list[Any] = []
    for raw in raws:
        key = peek_key(raw)
        if key is not None:
            built[key] = raw
        if key is None or key[1] < 2:
            items.append(raw)
            continue
        author, seq = key
        before = built.get((author, seq - 1)) or await base(author, seq - 1)
        blob = deflate_against(raw, before) if before is not None else None
        items.append([author, seq, blob] if blob is not None and len(blob) < len(raw) else raw)
    return items


def _item(value: Any) -> tuple[bytes, int, bytes] | bytes:
    if isinstance(value, bytes):
        return value
    if (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], bytes)
        and len(value[0]) == 32
        and type(value[1]) is int
        and value[1] >= 2
        and isinstance(value[2], bytes)
    ):
        return value[0], value[1], value[2]
    raise ProtocolError("deltas has an item that is neither an event nor [author, seq, delta]")


async def decode(
    value: Any, vv: Mapping[bytes, int], base: Base, max_items: int, limit: int
) -> tuple[list[bytes], list[Rejection]]:
    """(the events rebuilt, in order, rejections of those held or not rebuilt)."""
    if not isinstance(value, list) or len(value) > max_items:
        raise ProtocolError(f"deltas is not a list of at most {max_items} items")
    raws: list[bytes] = []
    rejections: list[Rejection] = []
    built: dict[tuple[bytes, int], bytes] = {}
    total = 0
    for item in map(_item, value):
        if isinstance(item, bytes):
            key = peek_key(item)
            if key is not None:  # whole, and what a delta after it is against
                built.setdefault(key, item)
            raws.append(item)
            continue
        author, seq, blob = item
        if seq <= vv.get(author, 0) or (author, seq) in built:
            rejections.append(Rejection(Reason.DUPLICATE, HELD, author, seq))
            continue
        before = built.get((author, seq - 1))
        if before is None and seq - 1 == vv.get(author, 0):
            before = await base(author, seq - 1)
        if before is None:
            rejections.append(Rejection(Reason.GAP, "the event a delta is against is not held"))
            continue
        raw = inflate_against(blob, before, min(MAX_EVENT_BYTES, limit - total))
        if raw is None:
            rejections.append(Rejection(Reason.MALFORMED, "delta does not inflate within bounds"))
            continue
        total += len(raw)
        built[(author, seq)] = raw
        raws.append(raw)
    return raws, rejections
