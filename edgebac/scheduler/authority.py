"""Who may write what. A valid signature says who wrote an event, not that they were allowed to:
the projection counts an event only if its author had the right, and keeps the others as
evidence against their author.

Every rule is a pure function of the log, so every node counts the same events:
- an author that never announced itself counts for nothing (its announcement comes first in its
  chain, which ingest checks; here, the one in force is the newest before the event's seq);
- `JobCreated` only by an announced requester, for the job id its content derives (see
  `edgebac.eventlog.signed.job_id_for`), so two creations can never claim one id;
- a job's rounds, acceptances, rejections, lost nodes and end only by that job's requester (a
  cancel of a client's job only with that client's signed request); a `NodeLost` marks its
  node lost for its author's own decisions only (`NodeInfo.lost_by`), never for another
  requester's;
- bids only by announced compute nodes, whose announced labels satisfy the job's constraints;
  the free resources a bid claims are capped by what its author announced (`capped_free`);
- an execution's start, failure and result only by the node it was accepted for (a failure
  also by the requester: its timeouts); ids in events have their one format (`ids`).
`WRITERS` says it in words: `edgebac log verify` and the API quote it next to the evidence.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edgebac.eventlog.encoding import Event
from edgebac.eventlog.signed import CANCEL, job_id_for, request_valid
from edgebac.scheduler import events as ev
from edgebac.scheduler import ids
from edgebac.scheduler.state import RESOURCE_KEYS, Job

REQUESTER = "requester"
COMPUTE = "compute"
JOB_REQUESTER = "the job's requester"
EXECUTION_NODE = "the node the execution was accepted for"

WRITERS: Mapping[str, str] = MappingProxyType(
    {
        ev.NODE_ANNOUNCED: "any member, about itself (its first event)",
        ev.JOB_CREATED: "a node that announced the requester role, for the id its request derives",
        ev.BIDS_REQUESTED: JOB_REQUESTER,
        ev.BID_OFFERED: "a node that announced the compute role and the labels the job selects",
        ev.BID_DECLINED: "a node that announced the compute role",
        ev.BID_ACCEPTED: JOB_REQUESTER,
        ev.BID_REJECTED: JOB_REQUESTER,
        ev.EXECUTION_STARTED: EXECUTION_NODE,
        ev.EXECUTION_FAILED: f"{EXECUTION_NODE}, or {JOB_REQUESTER}",
        ev.RESULT_PUBLISHED: EXECUTION_NODE,
        ev.NODE_LOST: JOB_REQUESTER,
        ev.JOB_COMPLETED: JOB_REQUESTER,
        ev.JOB_FAILED: JOB_REQUESTER,
        ev.JOB_CANCELED: f"{JOB_REQUESTER}, on the signed request of the job's client",
    }
)


@dataclass(frozen=True, slots=True)
class Announced:
    """What an author said of itself in one `NodeAnnounced`."""

    seq: int
    roles: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, event: Event) -> Announced:
        body = event.body
        labels = body.get("labels") if isinstance(body.get("labels"), dict) else {}
        resources = body.get("resources") if isinstance(body.get("resources"), dict) else {}
        roles = body.get("roles") if isinstance(body.get("roles"), list) else []
        return cls(
            event.seq,
            frozenset(r for r in roles if isinstance(r, str)),
            MappingProxyType({k: v for k, v in labels.items() if isinstance(v, str)}),
            MappingProxyType({k: v for k, v in resources.items() if type(v) is int and v >= 0}),
        )


class Announcements:
    """Every author's announcements in seq order: which one was in force at any of its seqs.

    An author's chain reaches the projection in seq order (ingest extends chains in order), so
    when one of its events is folded, every announcement before it is here: the answer for an
    event never changes, whatever else arrives later."""

    def __init__(self) -> None:
        self._by_author: dict[bytes, list[Announced]] = {}

    def add(self, author: bytes, announced: Announced) -> None:
        history = self._by_author.setdefault(author, [])
        at = bisect.bisect_left(history, announced.seq, key=lambda a: a.seq)
        if at == len(history) or history[at].seq != announced.seq:
            history.insert(at, announced)

    def as_of(self, author: bytes, seq: int) -> Announced | None:
        """The newest announcement of `author` at or before its event `seq`."""
        history = self._by_author.get(author)
        if not history:
            return None
        at = bisect.bisect_right(history, seq, key=lambda a: a.seq)
        return history[at - 1] if at else None

    def __contains__(self, author: bytes) -> bool:
        return author in self._by_author


def creation_violation(event: Event, author: Announced | None) -> str | None:
    """Why a `JobCreated` counts for nothing (None: it opens its job)."""
    if author is None:
        return "its author never announced itself"
    if REQUESTER not in author.roles:
        return "JobCreated by a node that did not announce the requester role"
    body = event.body
    if not ids.is_job_id(body.get("job_id")):
        return "job id is not of the form j-<16 hex digits>"
    asker = _asker(body)
    nonce = body.get("nonce")
    if asker is None or not isinstance(nonce, str) or not isinstance(body.get("spec"), dict):
        return "JobCreated carries no client request (client or vouched, nonce, spec)"
    if body["job_id"] != job_id_for(event.author, asker, body["spec"], nonce):
        return "job id does not match the request it claims to carry"
    return None


def _asker(body: Mapping[str, Any]) -> bytes | str | None:
    """Who asked for a job: a client key, or the name its requester vouches for."""
    client, vouched = body.get("client"), body.get("vouched")
    if isinstance(client, bytes) and len(client) == 32 and vouched is None:
        return client
    if isinstance(vouched, str) and 0 < len(vouched) <= 200 and client is None:
        return vouched
    return None


def violation(job: Job, event: Event, author: Announced | None) -> str | None:
    """Why an event about an open `job` counts for nothing (None: it counts)."""
    if author is None:
        return "its author never announced itself"
    rule = _RULES.get(event.type)
    return rule(job, event, author) if rule is not None else None


def capped_free(claimed: Mapping[str, Any], author: Announced) -> dict[str, int]:
    """The free resources a bid may claim: what it says, at most what its author announced."""
    free = {}
    for key in RESOURCE_KEYS:
        value = claimed.get(key)
        if type(value) is int and value >= 0:
            free[key] = min(value, author.resources.get(key, 0))
    return free


def _by_requester(job: Job, event: Event, author: Announced) -> str | None:
    if event.author != job.requester:
        return f"{event.type} about a job by a node other than {JOB_REQUESTER}"
    return None


def _accepted(job: Job, event: Event, author: Announced) -> str | None:
    problem = _by_requester(job, event, author)
    if problem is not None:
        return problem
    body = event.body
    attempt = body.get("attempt", 0)
    if type(attempt) is not int or not 0 <= attempt < 1_000_000:
        return "BidAccepted with an attempt that is not a round number"
    if body.get("execution_id") != ids.execution_id(job.id, attempt, body["node"]):
        return "BidAccepted names an execution id other than the one its bid derives"
    return None


def _canceled(job: Job, event: Event, author: Announced) -> str | None:
    """A client's job is canceled only on that client's signed request, which the requester
    carries into the event; a job its requester vouched for, on the requester's word."""
    problem = _by_requester(job, event, author)
    if problem is not None or job.client is None:
        return problem
    body = event.body
    fields = {"job_id": job.id, "nonce": body.get("nonce"), "reason": body.get("reason")}
    signed = body.get("client") == job.client and request_valid(
        job.client, body.get("client_sig"), CANCEL, job.requester, fields
    )
    return None if signed else "JobCanceled of a client's job without that client's signed request"


def _bid(job: Job, event: Event, author: Announced) -> str | None:
    if COMPUTE not in author.roles:
        return f"{event.type} by a node that did not announce the compute role"
    # One reason whatever the constraints (the job names them): evidence counts by reason,
    # and a reason per constraint set would let a liar grow them without end.
    spec = job.spec if event.type == ev.BID_OFFERED else None
    if spec is not None and not all(c.matches(author.labels) for c in spec.constraints):
        return "bid by a node whose announced labels do not match the job's constraints"
    return None


def _on_execution(*also: Callable[[Job], bytes]) -> Callable[[Job, Event, Announced], str | None]:
    def rule(job: Job, event: Event, author: Announced) -> str | None:
        execution_id = event.body.get("execution_id")
        if not ids.is_execution_id(execution_id):
            return f"{event.type} with a malformed execution id"
        execution = job.executions.get(execution_id)
        if execution is None:
            return f"{event.type} about an execution the job's requester never accepted"
        if event.author != execution.node and all(event.author != who(job) for who in also):
            return f"{event.type} by a node other than {EXECUTION_NODE}"
        if event.type == ev.RESULT_PUBLISHED and not _result_ok(event.body):
            return "ResultPublished with a digest that is not a CID"
        return None

    return rule


def _result_ok(body: Mapping[str, Any]) -> bool:
    digest = body.get("digest")
    return digest is None or ids.is_cid(digest)


def _requester(job: Job) -> bytes:
    return job.requester


_RULES: dict[str, Callable[[Job, Event, Announced], str | None]] = {
    ev.JOB_CREATED: lambda job, event, author: "a second JobCreated for an existing job",
    ev.BIDS_REQUESTED: _by_requester,
    ev.BID_OFFERED: _bid,
    ev.BID_DECLINED: _bid,
    ev.BID_ACCEPTED: _accepted,
    ev.BID_REJECTED: _by_requester,
    ev.EXECUTION_STARTED: _on_execution(),
    ev.EXECUTION_FAILED: _on_execution(_requester),
    ev.RESULT_PUBLISHED: _on_execution(),
    ev.NODE_LOST: _by_requester,
    ev.JOB_COMPLETED: _by_requester,
    ev.JOB_FAILED: _by_requester,
    ev.JOB_CANCELED: _canceled,
}
