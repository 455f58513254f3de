"""Which verified events extend their authors' chains: a pure function, no I/O, no clock.

The store hands in what it knows (each author's head, the ids it already holds at the seqs an
incoming batch repeats) and applies the verdict; tests drive it directly from tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import Event
from edgebac.eventlog.types import FIRST_TYPES


class Reason(StrEnum):
    """Why an event was refused; stable codes for metrics, logs and tests."""

    MALFORMED = "malformed"
    NOT_CANONICAL = "not_canonical"
    TOO_LARGE = "too_large"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_TYPE = "unknown_type"
    BAD_BODY = "bad_body"
    NOT_MEMBER = "not_member"
    DUPLICATE = "duplicate"
    FORK = "fork"
    GAP = "gap"
    PREV_MISMATCH = "prev_mismatch"
    HLC_NOT_INCREASING = "hlc_not_increasing"
    CLOCK_SKEW = "clock_skew"
    NOT_ANNOUNCED = "not_announced"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    author: bytes | None = None
    seq: int | None = None
    event_id: bytes | None = None

    @classmethod
    def of(cls, event: Event, reason: Reason, detail: str) -> Rejection:
        return cls(reason, detail, event.author, event.seq, event.id)

    def __str__(self) -> str:
        where = f"{self.author.hex()[:12]}#{self.seq}: " if self.author is not None else ""
        return f"{where}{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Head:
    """The last event of an author's chain that we hold."""

    seq: int
    id: bytes
    hlc: Hlc


@dataclass(frozen=True, slots=True)
class Fork:
    """Evidence: `event` is signed by its author but differs from the event held at its seq."""

    event: Event
    existing_id: bytes


@dataclass
class Verdict:
    accepted: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    forks: list[Fork] = field(default_factory=list)
    heads: dict[bytes, Head] = field(default_factory=dict)


def _by_author(events: Iterable[Event]) -> dict[bytes, list[Event]]:
    grouped: dict[bytes, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.author, []).append(event)
    for chain in grouped.values():
        chain.sort(key=lambda event: event.seq)
    return grouped


def _refusal(head: Head | None, event: Event, newest_allowed_ms: int) -> tuple[Reason, str] | None:
    """Why `event` cannot follow `head`; None when it extends the chain."""
    head_seq = head.seq if head else 0
    if event.seq != head_seq + 1:
        return Reason.GAP, f"seq {event.seq} does not follow held seq {head_seq}"
    if head is None and event.type not in FIRST_TYPES:
        return (
            Reason.NOT_ANNOUNCED,
            f"an author's first event must be its NodeAnnounced, not {event.type}",
        )
    expected_prev = head.id if head else None
    if event.prev != expected_prev:
        return Reason.PREV_MISMATCH, "prev is not the id of the author's previous event"
    if head is not None and event.hlc <= head.hlc:
        return Reason.HLC_NOT_INCREASING, f"hlc {event.hlc} is not after {head.hlc}"
    if event.hlc.ms > newest_allowed_ms:
        beyond = event.hlc.ms - newest_allowed_ms
        return Reason.CLOCK_SKEW, f"hlc {event.hlc} is {beyond} ms past the allowed clock skew"
    return None


def check_chains(
    heads: Mapping[bytes, Head],
    held_ids: Mapping[tuple[bytes, int], bytes],
    events: Iterable[Event],
    *,
    now_ms: int,
    max_skew_ms: int,
    is_member: Callable[[bytes], bool] = lambda author: True,
) -> Verdict:
    """Sort a batch of signature-checked events into accepted, refused and forks.

    `held_ids` maps (author, seq) to the id already stored there, for every incoming event at
    or below its author's head. Each author's chain is taken in seq order, so one bad event
    refuses only what follows it in that author's chain; other authors are unaffected.
    `verdict.heads` holds the new head of every author that gained events.
    """
    verdict = Verdict()
    newest_allowed_ms = now_ms + max_skew_ms
    for author, chain in _by_author(events).items():
        if not is_member(author):
            verdict.rejections.extend(
                Rejection.of(e, Reason.NOT_MEMBER, "author is not a member of this network")
                for e in chain
            )
            continue
        head = heads.get(author)
        seen = {}  # ids accepted from this batch, so in-batch repeats are judged too
        for event in chain:
            if head is not None and event.seq <= head.seq:
                held = seen.get(event.seq) or held_ids.get((author, event.seq))
                if held == event.id:
                    verdict.rejections.append(
                        Rejection.of(event, Reason.DUPLICATE, "event is already held")
                    )
                else:
                    verdict.rejections.append(
                        Rejection.of(event, Reason.FORK, "a different event is held at this seq")
                    )
                    verdict.forks.append(Fork(event, held or b""))
                continue
            refusal = _refusal(head, event, newest_allowed_ms)
            if refusal is not None:
                verdict.rejections.append(Rejection.of(event, *refusal))
                continue
            verdict.accepted.append(event)
            seen[event.seq] = event.id
            head = Head(event.seq, event.id, event.hlc)
            verdict.heads[author] = head
    return verdict
