"""What the projection keeps of jobs that ended long ago, so a node's memory does not grow with
every job it has ever seen.

A job that has ended changes no more: every later event of it is ignored by the fold (see
`jobfold.apply`). Only an event that sorts *before* the end (one that gossip delivered late)
can change it, by re-folding the job. So once a job has ended some time ago, the projection
may drop its events and its heavy parts (spec, bids, declines) and keep an `EndedJob`: what
listing needs, the job's digest (its part of the state hash), and what it adds to node
reputations. The log still holds everything: a late event marks the job for a reload, and the
shell hands the job's events, read again from the log, back to `Projection.reload`.

Nothing here is state: which jobs were let go depends on the order events arrived in, but the
state hash does not (an ended job's digest is the same whether it is held or not).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import msgpack

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import Event, canonical_body
from edgebac.scheduler.state import Job

SortKey = tuple[int, bytes, int]


@dataclass(frozen=True, slots=True)
class Retention:
    """When an ended job's detail is let go: when it ended more than `ended_ms` (of log time:
    the newest event folded) ago, or when more than `ended_max` ended jobs are held in full
    (the oldest ended go first). Kept for a while so that the stragglers of a job just ended
    (a late bid, a result after a cancel) do not each cost a read of the log."""

    ended_ms: int = 60_000
    ended_max: int = 32


@dataclass(slots=True)
class EndedJob:
    """What the projection keeps of an ended job it let go of (see the module docstring)."""

    id: str
    requester: bytes
    created_hlc: Hlc
    status: str
    reason: str | None
    name: str
    engine: Any
    executions: tuple[str, ...]  # their ids: the executions themselves stay in the projection
    execution_counts: tuple[tuple[str, int], ...]  # (status, how many), by status
    digest: bytes  # job_digest() of the job when it was let go
    last_key: SortKey  # of the last event folded: an event sorting after it changes nothing
    contrib: tuple[tuple[bytes, int, int], ...]  # (node, completed, failed): for reputations
    lost: tuple[Event, ...]  # its NodeLost events: the log finds them by type, not by job
    client: bytes | None = None  # who asked for it (the API shows a client its own jobs)
    vouched: str | None = None
    # (author, reason, how many) of its events that counted for nothing: the projection's
    # evidence counts keep them, and take them back if the job is read back and folded again.
    evidence: tuple[tuple[bytes, str, int], ...] = ()

    @classmethod
    def of(
        cls,
        job: Job,
        last_key: SortKey,
        contrib: tuple[tuple[bytes, int, int], ...],
        lost: tuple[Event, ...],
    ) -> EndedJob:
        engine = job.spec_dict.get("engine")
        return cls(
            id=job.id,
            requester=job.requester,
            created_hlc=job.created_hlc,
            status=job.status,
            reason=job.reason,
            name=job.spec.name if job.spec else "",
            engine=engine.get("type") if isinstance(engine, dict) else None,
            executions=tuple(job.executions),
            execution_counts=tuple(
                sorted(Counter(e.status for e in job.executions.values()).items())
            ),
            digest=job_digest(job),
            last_key=last_key,
            contrib=contrib,
            lost=lost,
            client=job.client,
            vouched=job.vouched,
        )


# (held jobs' digests, nodes and reputations): see `Projection.hash_parts`.
HashParts = tuple[dict[str, bytes], dict[str, Any]]


class CountChanged(ValueError):
    """The rows streamed are not as many as counted before (they changed in between)."""


def hash_state(ended: Iterator[tuple[str, bytes]], ended_count: int, parts: HashParts) -> str:
    """sha256 of the canonical msgpack of {"jobs": {id: digest}, "nodes", "reputation"}, the
    ended jobs' digests streamed in job id order (`ended_count` of them: the map's length
    comes first) and merged with the held ones': the bytes are those of packing the one map,
    without ever holding it."""
    held, shared = parts
    rest = canonical_body(shared)
    if min(rest, default="z") <= "jobs":
        raise ValueError("the shared parts must sort after 'jobs'")
    pack = msgpack.Packer(use_bin_type=True).pack
    total = hashlib.sha256()
    header = msgpack.Packer(use_bin_type=True)
    total.update(header.pack_map_header(1 + len(rest)) + pack("jobs"))
    total.update(header.pack_map_header(ended_count + len(held)))
    mine = sorted(held.items())  # few: merged in by hand (heapq.merge costs a row a microsecond)
    at, upto, count = 0, len(mine), len(mine)
    rows = iter(ended)
    while batch := list(islice(rows, 4096)):
        count += len(batch)
        if at < upto and mine[at] < batch[-1]:  # held ones among these: as heapq.merge orders
            chunk: list[bytes] = []
            for row in batch:
                while at < upto and mine[at] < row:
                    chunk += (pack(mine[at][0]), pack(mine[at][1]))
                    at += 1
                chunk += (pack(row[0]), pack(row[1]))
        else:
            chunk = [pack(value) for row in batch for value in row]
        total.update(b"".join(chunk))
    total.update(b"".join(pack(value) for row in mine[at:] for value in row))
    if count != ended_count + len(held):
        raise CountChanged(f"{count} job digests, not the {ended_count + len(held)} announced")
    for key in sorted(rest):
        total.update(pack(key) + pack(rest[key]))
    return total.hexdigest()


def job_digest(job: Job) -> bytes:
    """sha256 of the canonical msgpack of `job.to_dict()`: a job's part of the state hash."""
    packed = msgpack.packb(canonical_body(job.to_dict()), use_bin_type=True)
    return hashlib.sha256(packed).digest()


class Seen:
    """Which events were folded, by (author, seq): per author, the highest seq up to which all
    were seen, and the seqs above it seen out of order (tests fold chains with holes). Small
    whatever the length of the log, where a set of event ids grows with it. (author, seq)
    names one event: the log refuses forks, so the projection never gets two."""

    def __init__(self) -> None:
        self._upto: dict[bytes, int] = {}
        self._above: dict[bytes, set[int]] = {}

    def __contains__(self, event: Event) -> bool:
        if event.seq <= self._upto.get(event.author, 0):
            return True
        above = self._above.get(event.author)
        return above is not None and event.seq in above

    def add(self, event: Event) -> None:
        author, upto = event.author, self._upto.get(event.author, 0)
        above = self._above.get(author)
        if event.seq != upto + 1:
            if event.seq > upto:
                self._above.setdefault(author, set()).add(event.seq)
            return
        upto = event.seq
        while above and upto + 1 in above:
            upto += 1
            above.remove(upto)
        if above is not None and not above:
            del self._above[author]
        self._upto[author] = upto
