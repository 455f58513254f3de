"""The projection: a pure fold of the log into jobs, executions and nodes.

Order-free by construction: job state is the fold of that job's events in one total order,
(hlc, author, seq), and node state keeps maxima (highest announcement seq, newest hlc seen),
so any arrival order that keeps each author's own order gives the same state and hash.

Fast in the common case: an event that sorts after everything already folded for its job is
applied in place. A late arrival (sorting before some folded event of its job) re-folds just
that job from its own event list. `NodeLost` names the jobs it affects (`job_ids`) and is
routed to each of them, so jobs stay independent folds.

Indexes kept in step with each job after every fold of it (all derived, none in the hash): the
live jobs, the active executions of each node, and what each node's active executions and
undecided bids claim of its resources. They let decisions look at what matters (live jobs, my
executions) instead of everything the log ever held.

Bounded memory (with a `Retention`): jobs that ended a while ago are let go of, down to an
`EndedJob` and their executions in `evicted` (an `ended.EndedStore`: in memory for pure folds,
over rows in SQLite for a node; see `retention`). An event that could change such a job puts it in
`needs_reload`; the shell reads the job's events from the log and hands them to `reload`. The
state hash covers each job by its digest, so it is the same whether a job is held or not.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edgebac.eventlog.clock import ZERO, Hlc
from edgebac.eventlog.encoding import Event
from edgebac.scheduler import authority, findings, jobfold
from edgebac.scheduler import events as ev
from edgebac.scheduler.authority import Announced, Announcements
from edgebac.scheduler.ended import EndedRecord, EndedStore, Executions
from edgebac.scheduler.findings import Findings
from edgebac.scheduler.retention import (
    CountChanged,
    EndedJob,
    HashParts,
    Retention,
    Seen,
    SortKey,
    hash_state,
    job_digest,
)
from edgebac.scheduler.state import RESOURCE_KEYS, Execution, Job, NodeInfo


def sort_key(event: Event) -> SortKey:
    return (event.hlc.pack(), event.author, event.seq)


class Projection:
    """State folded from events. Read `jobs`, `evicted`, `executions`, `nodes`; change it only
    by `apply` and `reload`. `retention` None holds every job in full (tests, tools)."""

    def __init__(self, retention: Retention | None = None) -> None:
        self.retention = retention
        self.jobs: dict[str, Job] = {}  # held in full
        self.evicted = EndedStore()  # ended jobs let go of (see `retention`)
        self.needs_reload: set[str] = set()  # evicted jobs an event may change: see `reload`
        # The jobs the last `apply` let go of, in full: a shell may have to answer about them
        # once more (a long poll of the job). Not state: dropped at the next `apply`.
        self.released: dict[str, Job] = {}
        self._held_executions: dict[str, Execution] = {}
        self.executions = Executions(self._held_executions, self.evicted)  # held and evicted
        self.nodes: dict[bytes, NodeInfo] = {}
        self.announcements = Announcements()  # every author's, by seq (see `authority`)
        # Events whose authors had no right to write them (see `evidence`): per held job, how
        # many of each (author, why), replaced whenever the job is folded again; a job let go
        # of adds its counts to `_evidence_let_go` (and keeps them in its summary, to take
        # them back if it is read back). Bounded: counts, not events, and none per ended job.
        self._evidence: dict[str, Findings] = {}
        self._evidence_let_go: findings.Totals = {}
        self._buckets: dict[str, list[tuple[SortKey, Event]]] = {}
        self._seen = Seen()
        self._newest: Hlc = ZERO  # of every event folded: the log's time for `retention`
        self._ended: list[tuple[Hlc, str]] = []  # heap of held ended jobs (stale entries too)
        self._ended_at: dict[str, Hlc] = {}  # held ended job -> its entry in `_ended`
        self._late_lost: dict[str, list[Event]] = {}  # NodeLost events of evicted jobs
        self._rep: dict[bytes, list[int]] = {}  # node -> [completed, failed]
        self._contrib: dict[str, dict[bytes, tuple[int, int]]] = {}
        # Derived indexes (see the module docstring); never part of `to_dict`.
        self.live: dict[str, Job] = {}  # jobs not ended yet
        self._active: dict[bytes, dict[str, Execution]] = {}  # node -> accepted/running
        self._claimed: dict[bytes, dict[str, int]] = {}  # node -> resources claimed
        self._job_index: dict[str, _JobIndex] = {}

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> Projection:
        projection = cls()
        projection.apply(events)
        return projection

    def apply(self, events: Iterable[Event]) -> set[str]:
        """Fold new events in (duplicates are skipped); returns the ids of jobs that changed."""
        changed: set[str] = set()
        self.released = {}
        for event in events:
            if not self._see(event):
                continue
            for job_id in _job_ids(event):
                if self._add(job_id, event):
                    changed.add(job_id)
        self._evict_due()
        return changed

    def reload(self, job_id: str, events: Iterable[Event]) -> set[str]:
        """Re-fold an evicted job from all its events (as `EventLog.by_job` gives them; its
        NodeLost events are kept here). Returns {job_id} if the job changed."""
        record = self.evicted.pop(job_id)
        self.needs_reload.discard(job_id)
        if record is None:  # held (reloaded already): its events fold as usual
            return self.apply(events)
        ended = record.summary
        findings.add(self._evidence_let_go, ended.evidence, -1)  # the fold finds them again
        bucket = {}
        for event in (*events, *ended.lost, *self._late_lost.pop(job_id, ())):
            if job_id in _job_ids(event):
                self._see(event)  # the log may hold events the shell has not folded yet
                bucket[event.id] = (sort_key(event), event)
        self._buckets[job_id] = sorted(bucket.values(), key=lambda item: item[0])
        self._contrib[job_id] = {
            node: (completed, failed) for node, completed, failed in ended.contrib
        }
        self._refold(job_id)
        if job_id not in self.jobs:
            self._set_contrib(job_id, {})
        self._evict_due()
        return {job_id}

    def rebuild(self, job_id: str, events: Iterable[Event]) -> Job | None:
        """The full job folded from its events (from `EventLog.by_job`), for showing an evicted
        job; changes nothing here."""
        ended = self.evicted.get(job_id)
        lost = (*ended.lost, *self._late_lost.get(job_id, ())) if ended else ()
        bucket = {e.id: (sort_key(e), e) for e in (*events, *lost) if job_id in _job_ids(e)}
        return self._fold(sorted(bucket.values(), key=lambda item: item[0]), None, {})

    def active_on(self, node: bytes) -> Mapping[str, Execution]:
        """The accepted or running executions of `node`, by id (read only)."""
        return self._active.get(node, _EMPTY)

    def claimed(self, node: bytes) -> dict[str, int]:
        """What `node`'s active executions and undecided current-round bids of live jobs claim:
        per resource key, the job's amount times the number of such claims."""
        claimed = self._claimed.get(node)
        return dict(claimed) if claimed else dict.fromkeys(RESOURCE_KEYS, 0)

    def reputation(self, node: bytes) -> tuple[int, int]:
        """(completed, failed) executions of `node` over all jobs in the log."""
        completed, failed = self._rep.get(node, (0, 0))
        return completed, failed

    def to_dict(self) -> dict[str, Any]:
        """The held jobs in full (evicted ones by digest), the nodes and their reputations."""
        return {
            "jobs": {job_id: job.to_dict() for job_id, job in self.jobs.items()},
            "evicted": {job_id: digest.hex() for job_id, digest in self.evicted.digests()},
            **self._shared(),
        }

    def state_hash(self) -> str:
        """sha256 of the canonical msgpack of every job's digest (held or evicted alike), the
        nodes and their reputations: equal states, equal hashes."""
        parts = self.hash_parts()
        try:
            return hash_state(self.evicted.digests(), len(self.evicted), parts)
        except CountChanged:  # a checkpoint committed between counting and reading the rows
            return hash_state(self.evicted.digests(), len(self.evicted), parts)

    def hash_parts(self) -> HashParts:
        """What `state_hash` hashes but the ended jobs' digests (a checkpoint reads those from
        the rows it just wrote): the held jobs' digests, the nodes and their reputations."""
        held = {job_id: job_digest(job) for job_id, job in self.jobs.items()}
        return held, self._shared()

    def _shared(self) -> dict[str, Any]:
        return {
            "nodes": {node.hex(): info.to_dict() for node, info in self.nodes.items()},
            "reputation": {node.hex(): list(rep) for node, rep in self._rep.items() if any(rep)},
        }

    def _see(self, event: Event) -> bool:
        """Note a new event and fold what it says of its author (False: folded before)."""
        if event in self._seen:
            return False
        self._seen.add(event)
        self._newest = max(self._newest, event.hlc)
        self._touch_node(event)
        return True

    def _node(self, node: bytes) -> NodeInfo:
        info = self.nodes.get(node)
        if info is None:
            info = self.nodes[node] = NodeInfo(node)
        return info

    def _touch_node(self, event: Event) -> None:
        info = self._node(event.author)
        info.heard_from(event.hlc)
        if event.type == ev.NODE_ANNOUNCED:
            self.announcements.add(event.author, Announced.of(event))
            if event.seq > info.seq:
                info.announce(event.seq, event.body)
        elif event.type == ev.NODE_LOST and self._may_declare_lost(event):
            self._node(event.body["node"]).declared_lost(event.author, event.hlc)

    def _add(self, job_id: str, event: Event) -> bool:
        key = sort_key(event)
        # A job held (or with events, waiting for its JobCreated) is not let go of: no read.
        held = job_id in self.jobs or job_id in self._buckets
        ended = None if held else self.evicted.get(job_id)
        if ended is not None:  # after its end it changes nothing; before, the log has the rest
            if key < ended.last_key:
                self.needs_reload.add(job_id)
                if event.type == ev.NODE_LOST:
                    self._late_lost.setdefault(job_id, []).append(event)
            return False
        bucket = self._buckets.setdefault(job_id, [])
        job = self.jobs.get(job_id)
        if not bucket or key > bucket[-1][0]:
            bucket.append((key, event))
            if job is not None:
                author = self.announcements.as_of(event.author, event.seq)
                problem = jobfold.apply(job, event, author)
                if problem is not None:
                    findings.found(self._evidence.setdefault(job_id, {}), event.author, problem)
                self._index(job)
                return problem is None
            if event.type != ev.JOB_CREATED:
                return False
        else:
            bisect.insort(bucket, (key, event), key=lambda item: item[0])
        return self._refold(job_id)

    def _refold(self, job_id: str) -> bool:
        """Rebuild one job from its events in order; the first JobCreated opens it."""
        old = self.jobs.pop(job_id, None)
        if old is not None:
            for execution_id in old.executions:
                self._held_executions.pop(execution_id, None)
            self._unindex(job_id)
        evidence: Findings = {}
        job = self._fold(self._buckets[job_id], old, evidence)
        if evidence:
            self._evidence[job_id] = evidence
        else:
            self._evidence.pop(job_id, None)
        if job is not None:
            self.jobs[job_id] = job
            self._index(job)
        elif old is not None:
            self._set_contrib(job_id, {})
        return job is not None or old is not None

    def _index(self, job: Job) -> None:
        """Keep the indexes and node reputations in step with one job."""
        self._unindex(job.id)
        contrib: dict[bytes, tuple[int, int]] = {}
        index = _JobIndex()
        claims: dict[bytes, int] = {}
        live = not job.terminal
        for execution in job.executions.values():
            self._held_executions[execution.id] = execution
            completed, failed = contrib.get(execution.node, (0, 0))
            if execution.status == "completed":
                completed += 1
            elif execution.status in ("failed", "lost"):
                failed += 1
            elif execution.active:
                self._active.setdefault(execution.node, {})[execution.id] = execution
                index.active.append((execution.node, execution.id))
                claims[execution.node] = claims.get(execution.node, 0) + 1
            contrib[execution.node] = (completed, failed)
        self._set_contrib(job.id, contrib)
        if live:
            self.live[job.id] = job
        elif job.id not in self._ended_at:
            self._ended_at[job.id] = ended = job.ended_hlc or job.created_hlc
            heapq.heappush(self._ended, (ended, job.id))
        if live and job.spec is not None:
            for bid in job.round_bids():
                if not job.decided(bid.attempt, bid.node):
                    claims[bid.node] = claims.get(bid.node, 0) + 1
            amounts = job.spec.claims()  # with its engine's defaults: never free
            index.claims = {
                node: {k: n * amounts[k] for k in RESOURCE_KEYS} for node, n in claims.items()
            }
            self._add_claims(index.claims, 1)
        self._job_index[job.id] = index

    def _unindex(self, job_id: str) -> None:
        """Take one job out of the derived indexes (before re-indexing or dropping it)."""
        self.live.pop(job_id, None)
        if job_id not in self.jobs:  # re-folded or let go of: its end may move
            self._ended_at.pop(job_id, None)
        index = self._job_index.pop(job_id, None)
        if index is None:
            return
        for node, execution_id in index.active:
            del self._active[node][execution_id]
        self._add_claims(index.claims, -1)

    def _evict_due(self) -> None:
        """Let go of the ended jobs `retention` says to (the oldest ended first)."""
        if self.retention is None:
            return
        horizon = self._newest.ms - self.retention.ended_ms
        while self._ended:
            ended, job_id = self._ended[0]
            if self._ended_at.get(job_id) != ended:
                heapq.heappop(self._ended)  # re-folded since, or let go of
            elif ended.ms <= horizon or len(self._ended_at) > self.retention.ended_max:
                heapq.heappop(self._ended)
                self._evict(job_id)
            else:
                break

    def _evict(self, job_id: str) -> None:
        job = self.jobs.pop(job_id)
        self._unindex(job_id)
        bucket = self._buckets.pop(job_id)
        lost = tuple(event for _, event in bucket if event.type == ev.NODE_LOST)
        # What stays is small: node ids shared with `nodes` (rather than a copy per event).
        same = self._same_id
        contrib = tuple((same(n), c, f) for n, (c, f) in self._contrib.pop(job_id, {}).items())
        for execution in job.executions.values():
            execution.node = same(execution.node)
            self._held_executions.pop(execution.id, None)
        job.requester = same(job.requester)
        last = bucket[-1][0]
        summary = EndedJob.of(job, (last[0], same(last[1]), last[2]), contrib, lost)
        summary.evidence = findings.counted(self._evidence.pop(job_id, {}))
        findings.add(self._evidence_let_go, summary.evidence)
        self.evicted.put(EndedRecord(summary, tuple(job.executions.values())))
        self.released[job_id] = job

    def _fold(
        self,
        bucket: list[tuple[SortKey, Event]],
        old: Job | None,
        evidence: Findings,
    ) -> Job | None:
        """One job from its events in order: the first JobCreated that counts opens it; what
        does not count goes into `evidence`."""
        job: Job | None = None
        for _, event in bucket:
            author = self.announcements.as_of(event.author, event.seq)
            if job is None:
                if event.type != ev.JOB_CREATED:
                    continue  # before its creation: judged if it sorts after one
                problem = authority.creation_violation(event, author)
                if problem is None:
                    job = jobfold.create(event, jobfold.parsed_before(event, old))
            else:
                problem = jobfold.apply(job, event, author)
            if problem is not None:
                findings.found(evidence, event.author, problem)
        return job

    def _may_declare_lost(self, event: Event) -> bool:
        """A NodeLost marks its node lost (for its author's decisions only: `NodeInfo.lost_by`)
        when written by an announced requester."""
        author = self.announcements.as_of(event.author, event.seq)
        node = event.body.get("node")
        return (
            author is not None and authority.REQUESTER in author.roles and isinstance(node, bytes)
        )

    def evidence(self) -> dict[bytes, dict[str, int]]:
        """Per author, how many of its events counted for nothing, by reason: the held jobs'
        and those of the jobs let go of (which keep counting after they are pruned)."""
        return findings.merged(self._evidence_let_go, self._evidence.values())

    def _same_id(self, node: bytes) -> bytes:
        info = self.nodes.get(node)
        return info.id if info is not None else node

    def _add_claims(self, claims: dict[bytes, dict[str, int]], sign: int) -> None:
        for node, amounts in claims.items():
            total = self._claimed.setdefault(node, dict.fromkeys(RESOURCE_KEYS, 0))
            for key, amount in amounts.items():
                total[key] += sign * amount

    def _set_contrib(self, job_id: str, contrib: dict[bytes, tuple[int, int]]) -> None:
        for node, (completed, failed) in self._contrib.get(job_id, {}).items():
            rep = self._rep.setdefault(node, [0, 0])  # a (0, 0) is not saved
            rep[0] -= completed
            rep[1] -= failed
        for node, (completed, failed) in contrib.items():
            rep = self._rep.setdefault(node, [0, 0])
            rep[0] += completed
            rep[1] += failed
        self._contrib[job_id] = contrib


_EMPTY: Mapping[str, Execution] = MappingProxyType({})


@dataclass(slots=True)
class _JobIndex:
    """What one job contributes to the derived indexes, so it can be taken out again."""

    active: list[tuple[bytes, str]] = field(default_factory=list)  # (node, execution id)
    claims: dict[bytes, dict[str, int]] = field(default_factory=dict)  # node -> amounts


def _job_ids(event: Event) -> list[str]:
    if event.type == ev.NODE_LOST:
        ids = event.body.get("job_ids")
        if isinstance(ids, list):
            return sorted({i for i in ids if isinstance(i, str)})
        return []
    job_id = event.job_id
    return [job_id] if job_id is not None else []
