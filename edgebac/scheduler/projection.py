"""The projection: a pure fold of the log into jobs, executions and nodes.

Order-free by construction: job state is the fold of that job's events in one total order,
(hlc, author, seq), and node state keeps maxima (highest announcement seq, newest hlc seen),
so any arrival order that keeps each author's own order gives the same state and hash.

Fast in the common case: an event that sorts after everything already folded for its job is
applied in place. A late arrival (sorting before some folded event of its job) re-folds just
that job from its own event list. `NodeLost` names the jobs it affects (`job_ids`) and is
routed to each of them, so jobs stay independent folds.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from typing import Any

import msgpack

from edgebac.eventlog.encoding import Event, canonical_body
from edgebac.scheduler import events as ev
from edgebac.scheduler import jobfold
from edgebac.scheduler.state import Execution, Job, NodeInfo

SortKey = tuple[int, bytes, int]


def sort_key(event: Event) -> SortKey:
    return (event.hlc.pack(), event.author, event.seq)


class Projection:
    """State folded from events. Read `jobs`, `executions`, `nodes`; change it only by `apply`."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.executions: dict[str, Execution] = {}
        self.nodes: dict[bytes, NodeInfo] = {}
        self._buckets: dict[str, list[tuple[SortKey, Event]]] = {}
        self._seen: set[bytes] = set()
        self._rep: dict[bytes, list[int]] = {}  # node -> [completed, failed]
        self._contrib: dict[str, dict[bytes, tuple[int, int]]] = {}

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> Projection:
        projection = cls()
        projection.apply(events)
        return projection

    def apply(self, events: Iterable[Event]) -> set[str]:
        """Fold new events in (duplicates are skipped); returns the ids of jobs that changed."""
        changed: set[str] = set()
        for event in events:
            if event.id in self._seen:
                continue
            self._seen.add(event.id)
            self._touch_node(event)
            for job_id in _job_ids(event):
                if self._add(job_id, event):
                    changed.add(job_id)
        return changed

    def reputation(self, node: bytes) -> tuple[int, int]:
        """(completed, failed) executions of `node` over all jobs in the log."""
        completed, failed = self._rep.get(node, (0, 0))
        return completed, failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": {job_id: job.to_dict() for job_id, job in self.jobs.items()},
            "nodes": {node.hex(): info.to_dict() for node, info in self.nodes.items()},
            "reputation": {node.hex(): list(rep) for node, rep in self._rep.items() if any(rep)},
        }

    def state_hash(self) -> str:
        """sha256 of the canonical msgpack of `to_dict()`: equal states, equal hashes."""
        packed = msgpack.packb(canonical_body(self.to_dict()), use_bin_type=True)
        return hashlib.sha256(packed).hexdigest()

    def _node(self, node: bytes) -> NodeInfo:
        info = self.nodes.get(node)
        if info is None:
            info = self.nodes[node] = NodeInfo(node)
        return info

    def _touch_node(self, event: Event) -> None:
        info = self._node(event.author)
        info.last_seen_hlc = max(info.last_seen_hlc, event.hlc)
        if event.type == ev.NODE_ANNOUNCED and event.seq > info.seq:
            _announce(info, event)
        elif event.type == ev.NODE_LOST and isinstance(event.body.get("node"), bytes):
            lost = self._node(event.body["node"])
            lost.lost_hlc = max(lost.lost_hlc, event.hlc)

    def _add(self, job_id: str, event: Event) -> bool:
        bucket = self._buckets.setdefault(job_id, [])
        key = sort_key(event)
        job = self.jobs.get(job_id)
        if not bucket or key > bucket[-1][0]:
            bucket.append((key, event))
            if job is not None:
                jobfold.apply(job, event)
                self._index(job)
                return True
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
                self.executions.pop(execution_id, None)
        job: Job | None = None
        for _, event in self._buckets[job_id]:
            if job is None:
                job = jobfold.create(event)
            else:
                jobfold.apply(job, event)
        if job is not None:
            self.jobs[job_id] = job
            self._index(job)
        elif old is not None:
            self._set_contrib(job_id, {})
        return job is not None or old is not None

    def _index(self, job: Job) -> None:
        """Keep the execution index and node reputations in step with one job."""
        contrib: dict[bytes, tuple[int, int]] = {}
        for execution in job.executions.values():
            self.executions[execution.id] = execution
            completed, failed = contrib.get(execution.node, (0, 0))
            if execution.status == "completed":
                completed += 1
            elif execution.status in ("failed", "lost"):
                failed += 1
            contrib[execution.node] = (completed, failed)
        self._set_contrib(job.id, contrib)

    def _set_contrib(self, job_id: str, contrib: dict[bytes, tuple[int, int]]) -> None:
        for node, (completed, failed) in self._contrib.get(job_id, {}).items():
            rep = self._rep[node]
            rep[0] -= completed
            rep[1] -= failed
        for node, (completed, failed) in contrib.items():
            rep = self._rep.setdefault(node, [0, 0])
            rep[0] += completed
            rep[1] += failed
        self._contrib[job_id] = contrib


def _job_ids(event: Event) -> list[str]:
    if event.type == ev.NODE_LOST:
        ids = event.body.get("job_ids")
        if isinstance(ids, list):
            return sorted({i for i in ids if isinstance(i, str)})
        return []
    job_id = event.job_id
    return [job_id] if job_id is not None else []


def _announce(info: NodeInfo, event: Event) -> None:
    body = event.body
    info.seq = event.seq
    info.addresses = list(body["addresses"])
    info.roles = list(body["roles"])
    info.labels = {k: v for k, v in body["labels"].items() if isinstance(v, str)}
    info.resources = {k: v for k, v in body["resources"].items() if type(v) is int}
    info.executors = list(body["executors"])
