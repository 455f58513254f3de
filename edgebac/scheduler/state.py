"""The projected state: jobs, their bids and executions, and the nodes that announced.

Plain mutable dataclasses, changed only by the fold in `jobfold` and `projection`; everything
else (decisions, the API) reads them. `to_dict` gives the canonical form the state hash covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebac.eventlog.clock import ZERO, Hlc
from edgebac.scheduler.spec import JobSpec

ACTIVE = ("accepted", "running")
FAILED = ("failed", "lost")
TERMINAL_JOB = ("completed", "failed", "canceled")
RESOURCE_KEYS = ("cpu_millis", "memory_bytes", "disk_bytes", "gpu")


@dataclass(slots=True)
class Bid:
    node: bytes
    attempt: int
    local_data: bool
    free: dict[str, int]
    cost: int | float
    hlc: Hlc

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node.hex(),
            "attempt": self.attempt,
            "local_data": self.local_data,
            "free": self.free,
            "cost": self.cost,
            "hlc": self.hlc.pack(),
        }


@dataclass(slots=True)
class Decline:
    node: bytes
    attempt: int
    reason: str
    detail: str
    hlc: Hlc

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node.hex(),
            "attempt": self.attempt,
            "reason": self.reason,
            "detail": self.detail,
            "hlc": self.hlc.pack(),
        }


@dataclass(slots=True)
class Execution:
    id: str
    job_id: str
    node: bytes
    attempt: int
    accepted_hlc: Hlc
    # The requester's wall clock when it accepted (`wall_ms` of the BidAccepted): the timeout
    # counts from it, not from the hlc, which another node's clock may have dragged ahead.
    accepted_ms: int = 0
    status: str = "accepted"  # accepted/running/completed/failed/lost/canceled
    started_hlc: Hlc | None = None
    ended_hlc: Hlc | None = None
    exit_code: int | None = None
    reference: str | None = None
    digest: str | None = None
    size: int | None = None
    stdout_head: str | None = None
    stderr_head: str | None = None
    reason: str | None = None
    permanent: bool = False  # its node says no other node can succeed either (bad module)
    surplus: bool = False  # completed beyond the job's count: kept, but its result not counted

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        out["node"] = self.node.hex()
        for name in ("accepted_hlc", "started_hlc", "ended_hlc"):
            out[name] = out[name].pack() if out[name] is not None else None
        return out


@dataclass(slots=True)
class Job:
    id: str
    requester: bytes
    spec_dict: dict[str, Any]
    spec: JobSpec | None  # None when the spec in the log does not parse
    created_hlc: Hlc
    client: bytes | None = None  # the client key that signed the submission
    vouched: str | None = None  # or who the requester vouches for (a caller that cannot sign)
    nonce: str | None = None  # the submission's nonce and client signature, as JobCreated
    client_sig: bytes | None = None  # carries them: any node can check the client asked
    status: str = "bidding"  # pending/bidding/running/completed/failed/canceled
    reason: str | None = None
    attempt: int = 0  # the current bid round
    round_hlc: Hlc = ZERO  # when the current round opened
    round_ms: int = 0  # the same by the requester's wall clock (`wall_ms`): deadlines use it
    bids: dict[tuple[int, bytes], Bid] = field(default_factory=dict)
    declines: dict[tuple[int, bytes], Decline] = field(default_factory=dict)
    rejected: dict[tuple[int, bytes], str] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    ended_hlc: Hlc | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_JOB

    def active(self) -> list[Execution]:
        return [e for e in self.executions.values() if e.active]

    def succeeded(self) -> list[Execution]:
        return [e for e in self.executions.values() if e.status == "completed"]

    def failures(self) -> list[Execution]:
        return [e for e in self.executions.values() if e.status in FAILED]

    def counted(self) -> list[Execution]:
        """Completed executions whose results count: the first `count` (see `jobfold`)."""
        return [e for e in self.executions.values() if e.status == "completed" and not e.surplus]

    def open_slots(self) -> int:
        """Batch: nodes still to find. Ops jobs have no fixed number (0)."""
        if self.spec is None or self.spec.type != "batch":
            return 0
        return max(0, self.spec.count - len(self.succeeded()) - len(self.active()))

    def answered(self, node: bytes, attempt: int) -> bool:
        return (attempt, node) in self.bids or (attempt, node) in self.declines

    def round_bids(self) -> list[Bid]:
        return [b for (a, _), b in self.bids.items() if a == self.attempt]

    def round_declines(self) -> list[Decline]:
        """Declines of the current round from nodes that did not bid after all."""
        return [
            d
            for (a, n), d in self.declines.items()
            if a == self.attempt and (a, n) not in self.bids
        ]

    def decided(self, attempt: int, node: bytes) -> bool:
        """The requester already accepted or rejected this bid."""
        if (attempt, node) in self.rejected:
            return True
        return any(e.attempt == attempt and e.node == node for e in self.executions.values())

    def to_dict(self) -> dict[str, Any]:
        def keyed(items: dict[tuple[int, bytes], Any]) -> dict[str, Any]:
            return {f"{a}:{n.hex()}": v for (a, n), v in items.items()}

        return {
            "id": self.id,
            "requester": self.requester.hex(),
            "spec": self.spec_dict,
            "created_hlc": self.created_hlc.pack(),
            "client": self.client.hex() if self.client else None,
            "vouched": self.vouched,
            "status": self.status,
            "reason": self.reason,
            "attempt": self.attempt,
            "round_hlc": self.round_hlc.pack(),
            "round_ms": self.round_ms,
            "bids": keyed({k: b.to_dict() for k, b in self.bids.items()}),
            "declines": keyed({k: d.to_dict() for k, d in self.declines.items()}),
            "rejected": keyed(self.rejected),
            "executions": {i: e.to_dict() for i, e in self.executions.items()},
            "attempts": self.attempts,
            "ended_hlc": self.ended_hlc.pack() if self.ended_hlc else None,
        }


@dataclass(slots=True)
class NodeInfo:
    id: bytes
    seq: int = 0  # of the NodeAnnounced this comes from; the highest wins
    addresses: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, int] = field(default_factory=dict)
    executors: list[str] = field(default_factory=list)
    last_seen_hlc: Hlc = ZERO  # newest event it wrote
    # Per requester, the packed hlc of the newest NodeLost it wrote about this node, while this
    # node has not been heard from since (older marks are dropped): a requester's word that a
    # node is lost holds for that requester's decisions only, so a compromised member cannot
    # keep a node out of other requesters' jobs.
    lost_by: dict[bytes, int] = field(default_factory=dict)

    @property
    def announced(self) -> bool:
        return self.seq > 0

    def announce(self, seq: int, body: dict[str, Any]) -> None:
        """Take what a `NodeAnnounced` at `seq` says (the log checked its shape)."""
        self.seq = seq
        self.addresses = list(body["addresses"])
        self.roles = list(body["roles"])
        self.labels = {k: v for k, v in body["labels"].items() if isinstance(v, str)}
        self.resources = {k: v for k, v in body["resources"].items() if type(v) is int}
        self.executors = list(body["executors"])

    def lost_for(self, requester: bytes) -> bool:
        """`requester` declared this node lost, and it has not been heard from since."""
        return requester in self.lost_by

    def declared_lost(self, requester: bytes, hlc: Hlc) -> None:
        """Fold a NodeLost of `requester` about this node, written at `hlc`."""
        if hlc > self.last_seen_hlc:
            packed = hlc.pack()
            self.lost_by[requester] = max(self.lost_by.get(requester, 0), packed)

    def heard_from(self, hlc: Hlc) -> None:
        """Fold an event this node wrote at `hlc`: lost marks older than it no longer hold.
        Either order of a NodeLost and the node's own events leaves the same marks."""
        if hlc > self.last_seen_hlc:
            self.last_seen_hlc = hlc
            if self.lost_by:
                packed = hlc.pack()
                self.lost_by = {r: h for r, h in self.lost_by.items() if h > packed}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id.hex(),
            "seq": self.seq,
            "addresses": self.addresses,
            "roles": self.roles,
            "labels": self.labels,
            "resources": self.resources,
            "executors": self.executors,
            "last_seen_hlc": self.last_seen_hlc.pack(),
            "lost_by": {r.hex(): hlc for r, hlc in sorted(self.lost_by.items())},
        }
