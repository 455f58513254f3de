"""Turning bytes from elsewhere into verified events: decoding, body shapes, signatures.

Checking signatures is most of an ingest's cost. libsodium drops the GIL while it checks and
decoding is Python (it holds the GIL), so a batch is decoded first and its signatures are then
checked in parts on several threads; threads that did both, event by event, queued for the GIL
at every event. (Threads doing Python work beside the event loop cost it the same way: keep
each thread's work mostly C, or keep it on one thread.)
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from edgebac.eventlog.chain import Reason, Rejection
from edgebac.eventlog.encoding import (
    BAD_SIGNATURE,
    EncodingError,
    Event,
    Verifier,
    decode_signed,
    signature_valid,
)
from edgebac.eventlog.types import body_problem

MIN_VERIFY_CHUNK = 32  # events per verifying thread; below this the thread hop costs more


def open_stored(raw: bytes, verifier: Verifier) -> Event:
    """Decode, check the signature and the body shape of bytes from anywhere but our own writer."""
    event = verifier.open(raw)
    problem = body_problem(event.type, event.body)
    if problem is not None:
        raise EncodingError(*problem)
    return event


def open_many(raws: Sequence[bytes], verifier: Verifier) -> Opened:
    events: list[Event] = []
    rejections: list[Rejection] = []
    for raw in raws:
        try:
            events.append(open_stored(raw, verifier))
        except EncodingError as exc:
            rejections.append(Rejection(Reason(exc.reason), exc.detail))
    return events, rejections


Decoded = list[tuple[Event, bytes]]  # events with the signed messages they carry
Opened = tuple[list[Event], list[Rejection]]  # the good events, and the refused with reasons


def decode_many(raws: Sequence[bytes]) -> tuple[Decoded, list[Rejection]]:
    """Decode and check body shapes: the Python half of opening events (it holds the GIL)."""
    decoded: Decoded = []
    rejections: list[Rejection] = []
    for raw in raws:
        try:
            event, signed = decode_signed(raw)
            problem = body_problem(event.type, event.body)
            if problem is not None:
                raise EncodingError(*problem)
            decoded.append((event, signed))
        except EncodingError as exc:
            rejections.append(Rejection(Reason(exc.reason), exc.detail))
    return decoded, rejections


def check_signatures(decoded: Decoded) -> Opened:
    """The libsodium half: so little Python per event that threads doing it run in parallel."""
    events: list[Event] = []
    rejections: list[Rejection] = []
    for event, signed in decoded:
        if signature_valid(event.author, signed):
            events.append(event)
        else:
            # Not `Rejection.of`: who it claims to be from is exactly what failed to verify.
            rejections.append(Rejection(Reason.BAD_SIGNATURE, BAD_SIGNATURE))
    return events, rejections


def open_batch(raws: Sequence[bytes], helpers: Executor | None, parts: int) -> Opened:
    """Decode the whole batch, then check its signatures in up to `parts` parts: the first
    here, the others on `helpers` (see the module docstring). The caller makes one thread hop
    for all of it, not one per part."""
    decoded, rejections = decode_many(raws)
    if helpers is None:
        parts = 1
    chunks = _chunks(decoded, min(parts, len(decoded) // MIN_VERIFY_CHUNK))
    others = [helpers.submit(check_signatures, chunk) for chunk in chunks[1:]] if helpers else []
    events, refused = check_signatures(chunks[0])
    for other in others:
        more_events, more_refused = other.result()
        events += more_events
        refused += more_refused
    return events, rejections + refused


def _chunks(items: Sequence[Any], count: int) -> list[Sequence[Any]]:
    """`items` in at least one and at most `count` consecutive slices of near equal length."""
    count = max(1, count)
    size = -(-len(items) // count)
    return [items[at : at + size] for at in range(0, len(items), size)] if items else [items]
