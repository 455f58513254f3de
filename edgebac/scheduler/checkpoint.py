"""Checkpoints of the projection: its state as plain data, so a node starts from the newest
one and folds only the events after it, not the whole log.

Plain data only (lists, maps, bytes, ints, floats, str) packed with msgpack: a checkpoint can
never run code, whatever its bytes say. What the projection derives (live jobs, active
executions, claims, reputations, the heap of ended jobs) is not saved: `load` rebuilds it by
indexing each held job as the fold does. A loaded state must give the state hash saved with
it, or `load` refuses it (the node then folds the whole log).

The ended jobs let go of are rows of their own (`Packed.jobs`, `Packed.executions`: indexed
tables, `eventlog.checkpoints`), written when they change (the store's overlay, frozen by
`snapshot`) and read back one by one (`ended_rows.StoredEnded`), never all loaded: `load`
builds the projection over them, and checks the state hash by streaming their digests. The
reputation counters are an aggregate in the core. This module is the projection's own
serializer, kept apart for size: it reads and sets the projection's private fields, and
nothing else may.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

import msgpack

from edgebac.eventlog.checkpoints import CheckpointAbandoned
from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import Event, decode
from edgebac.scheduler.authority import Announced
from edgebac.scheduler.ended import Backing, EndedRecord, Layer
from edgebac.scheduler.projection import Projection, sort_key
from edgebac.scheduler.retention import EndedJob, HashParts, Retention, hash_state
from edgebac.scheduler.spec import SpecError, parse_spec
from edgebac.scheduler.state import Bid, Decline, Execution, Job, NodeInfo

FORMAT_NUMBER = 3  # bump when what a checkpoint holds changes meaning, not only its shape
# The field names of every class saved: any change to one makes older checkpoints refused,
# without anyone having to remember to bump FORMAT_NUMBER.
_CLASSES = (Job, Execution, Bid, Decline, NodeInfo, EndedJob, Announced)
_SHAPE = ";".join(f"{c.__name__}:{','.join(f.name for f in fields(c))}" for c in _CLASSES)
FORMAT = f"{FORMAT_NUMBER}:{hashlib.sha256(_SHAPE.encode()).hexdigest()[:16]}"


class CheckpointError(ValueError):
    """A checkpoint that must not be trusted (the node folds the whole log instead)."""


@dataclass(slots=True)
class Snapshot:
    """What `snapshot` took on the loop: copies of what may change, and the ended records that
    changed (by reference: a record never changes, it is only replaced)."""

    core: dict[str, Any]
    changes: Layer  # job id -> record to store, or None: its row goes
    full: bool  # the rows replace all stored ones (else: they update them)
    hash_parts: HashParts


@dataclass(slots=True)
class Packed:
    core: bytes
    jobs: list[tuple[Any, ...]]  # rows of ended jobs (see `eventlog.checkpoints`)
    executions: list[tuple[Any, ...]]  # rows of their executions
    deleted: list[str]  # job ids whose rows go
    full: bool
    state_hash: Callable[[Iterator[tuple[str, bytes]], int], str]  # of the rows, once written


def snapshot(p: Projection, full: bool) -> Snapshot:
    """The projection as it is now, cheaply: the held jobs copied to plain data, the ended
    records changed since the last checkpoint (all of them with `full`, when no rows are
    stored) frozen in the store until the write is in (`EndedStore.committed` / `failed`)."""
    changes = p.evicted.freeze()
    if full:
        changes = {i: r for i, r in p.evicted.everything().items() if r is not None}
    return Snapshot(_core(p), changes, full, p.hash_parts())


def pack(s: Snapshot, abandon: Callable[[], bool] = lambda: False) -> Packed:
    """The bytes of a snapshot, and how to hash the state once its rows are in: pure, for the
    writer's thread. CheckpointAbandoned as soon as `abandon()` says so (a node stopping)."""
    jobs, executions, deleted = [], [], []
    for n, (job_id, record) in enumerate(s.changes.items()):
        if n % ABANDON_EVERY == 0 and abandon():
            raise CheckpointAbandoned("the node is stopping")
        if record is None:
            deleted.append(job_id)
            continue
        jobs.append(_job_row(record))
        executions += [_execution_row(e) for e in record.executions]
    if not s.full:
        deleted += [job_id for job_id, record in s.changes.items() if record is not None]
    parts = s.hash_parts
    return Packed(
        _pack(s.core),
        jobs,
        executions,
        sorted(set(deleted)),
        s.full,
        lambda digests, count: hash_state(digests, count, parts),
    )


ABANDON_EVERY = 1024  # records packed between two looks at `abandon`
HLC_SHIFT = 1 << 63  # hlcs are unsigned 64-bit; SQLite's integers are signed


def _job_row(record: EndedRecord) -> tuple[Any, ...]:
    summary = record.summary
    return (
        summary.id,
        summary.created_hlc.pack() - HLC_SHIFT,
        summary.status,
        summary.requester,
        summary.client,
        summary.vouched,
        summary.name,
        summary.digest,
        _pack(_plain(summary, _ENDED_FIELDS, _ENDED_OUT)),
    )


def _execution_row(e: Execution) -> tuple[Any, ...]:
    ended_ms = e.ended_hlc.ms if e.ended_hlc is not None else None
    row = (e.id, e.job_id, e.node, e.status, e.reference, e.digest, ended_ms)
    return (*row, _pack(_flat(e)))


def load(core: bytes, backing: Backing, state_hash: str, retention: Retention | None) -> Projection:
    """The projection a checkpoint holds, over its stored rows, refused (CheckpointError)
    unless it gives the state hash saved with it (streamed from the rows' digests). Pure but
    for the reads of `backing`: may run on a thread of its own."""
    try:
        p = _from_core(_unpack(core), retention)
        p.evicted.backing = backing
        for job in list(p.jobs.values()):
            p._index(job)
    except CheckpointError:
        raise
    except Exception as exc:  # any shape it should not have: not ours to trust
        raise CheckpointError(f"does not decode ({type(exc).__name__}: {exc})") from None
    got = p.state_hash()
    if got != state_hash:
        raise CheckpointError(f"state hash {got[:12]} is not the {state_hash[:12]} saved")
    return p


# ----- packing ------------------------------------------------------------------------------


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


def _hlc_fields(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    names = tuple(f.name for f in fields(cls))
    return names, frozenset(f.name for f in fields(cls) if "Hlc" in str(f.type))


_FLAT = {cls: _hlc_fields(cls) for cls in (Execution, Bid, Decline, NodeInfo)}


def _flat(obj: Any) -> list[Any]:
    """A dataclass of plain fields as a list, its Hlc fields packed into ints."""
    names, hlcs = _FLAT[type(obj)]
    out = []
    for name in names:
        value = getattr(obj, name)
        out.append(value.pack() if name in hlcs and value is not None else value)
    return out


def _unflat(cls: type, values: list[Any]) -> Any:
    names, hlcs = _FLAT[cls]
    if len(values) != len(names):
        raise CheckpointError(f"a {cls.__name__} of {len(values)} fields, not {len(names)}")
    args = [
        Hlc.unpack(v) if name in hlcs and v is not None else v
        for name, v in zip(names, values, strict=True)
    ]
    return cls(*args)


def _evidence(evidence: dict[tuple[bytes, str], int]) -> list[list[Any]]:
    return [[author, reason, n] for (author, reason), n in evidence.items()]


def _core(p: Projection) -> dict[str, Any]:
    """Everything but the ended rows, copied (the projection moves on while this is packed)."""
    return {
        "jobs": [_job(job) for job in p.jobs.values()],
        "buckets": [[job_id, [e.raw for _, e in b]] for job_id, b in p._buckets.items()],
        "evidence": [[job_id, _evidence(ev)] for job_id, ev in p._evidence.items()],
        "evidence_let_go": [[a, list(r.items())] for a, r in p._evidence_let_go.items()],
        "reputation": [[node, c, f] for node, (c, f) in _ended_reputation(p).items() if c or f],
        "nodes": [_flat(info) for info in p.nodes.values()],
        "announcements": [
            [author, [[a.seq, sorted(a.roles), dict(a.labels), dict(a.resources)] for a in history]]
            for author, history in p.announcements._by_author.items()
        ],
        "seen": [list(p._seen._upto.items()), [[a, sorted(s)] for a, s in p._seen._above.items()]],
        "newest": p._newest.pack(),
        "late_lost": [[job_id, [e.raw for e in lost]] for job_id, lost in p._late_lost.items()],
        "needs_reload": sorted(p.needs_reload),
    }


def _ended_reputation(p: Projection) -> dict[bytes, tuple[int, int]]:
    """What the jobs let go of add to each node's reputation: all of it but the held jobs'
    (which `load` adds back as it indexes them)."""
    rep = {node: (c, f) for node, (c, f) in p._rep.items()}
    for contrib in p._contrib.values():
        for node, (completed, failed) in contrib.items():
            c, f = rep[node]
            rep[node] = (c - completed, f - failed)
    return rep


# Fields of Job and EndedJob that are not plain data, and how each is saved; every other field
# is saved as it is, by name order, so a field added to either class travels without a change
# here (and FORMAT, which names the fields, refuses checkpoints taken before it).
def _keyed_flat(items: dict[tuple[int, bytes], Any]) -> list[list[Any]]:
    return [_flat(item) for item in items.values()]


_JOB_OUT: dict[str, Callable[[Any], Any]] = {
    "spec": lambda spec: None,  # parsed again from spec_dict
    "created_hlc": Hlc.pack,
    "round_hlc": Hlc.pack,
    "ended_hlc": lambda hlc: hlc.pack() if hlc is not None else None,
    "bids": _keyed_flat,
    "declines": _keyed_flat,
    "rejected": lambda rejected: [[a, node, why] for (a, node), why in rejected.items()],
    "executions": lambda executions: [_flat(e) for e in executions.values()],
}
_ENDED_OUT: dict[str, Callable[[Any], Any]] = {
    "created_hlc": Hlc.pack,
    "executions": list,
    "execution_counts": lambda counts: [list(pair) for pair in counts],
    "last_key": list,
    "contrib": lambda contrib: [list(c) for c in contrib],
    "lost": lambda lost: [event.raw for event in lost],
    "evidence": lambda found: [list(f) for f in found],
}
_JOB_FIELDS = tuple(f.name for f in fields(Job))
_ENDED_FIELDS = tuple(f.name for f in fields(EndedJob))


def _plain(obj: Any, names: tuple[str, ...], out: dict[str, Callable[[Any], Any]]) -> list[Any]:
    return [out[name](getattr(obj, name)) if name in out else getattr(obj, name) for name in names]


def _named(values: list[Any], names: tuple[str, ...], what: str) -> dict[str, Any]:
    if len(values) != len(names):
        raise CheckpointError(f"a {what} of {len(values)} fields, not {len(names)}")
    return dict(zip(names, values, strict=True))


def _job(job: Job) -> list[Any]:
    return _plain(job, _JOB_FIELDS, _JOB_OUT)


# ----- loading ------------------------------------------------------------------------------


def _events(raws: list[bytes]) -> list[Event]:
    return [decode(raw) for raw in raws]


def _from_core(core: dict[str, Any], retention: Retention | None) -> Projection:
    p = Projection(retention)
    for values in core["nodes"]:
        info = _unflat(NodeInfo, values)
        p.nodes[info.id] = info
    for author, history in core["announcements"]:
        for seq, roles, labels, resources in history:
            announced = Announced(
                seq, frozenset(roles), MappingProxyType(labels), MappingProxyType(resources)
            )
            p.announcements.add(author, announced)
    upto, above = core["seen"]
    p._seen._upto = dict(upto)
    p._seen._above = {author: set(seqs) for author, seqs in above}
    p._newest = Hlc.unpack(core["newest"])
    for values in core["jobs"]:
        job = _job_from(values, p._same_id)
        p.jobs[job.id] = job
    for job_id, raws in core["buckets"]:
        p._buckets[job_id] = [(sort_key(e), e) for e in _events(raws)]
    for job_id, evidence in core["evidence"]:
        p._evidence[job_id] = {(author, why): n for author, why, n in evidence}
    p._evidence_let_go = {a: dict(reasons) for a, reasons in core["evidence_let_go"]}
    p._late_lost = {job_id: _events(raws) for job_id, raws in core["late_lost"]}
    p._rep = {node: [c, f] for node, c, f in core["reputation"]}
    p.needs_reload = set(core["needs_reload"])
    return p


def _job_from(values: list[Any], same: Any) -> Job:
    kw = _named(values, _JOB_FIELDS, "Job")
    try:
        kw["spec"] = parse_spec(kw["spec_dict"])
    except SpecError:
        kw["spec"] = None  # as the fold left it: a failed job
    kw["requester"] = same(kw["requester"])
    for name in ("created_hlc", "round_hlc"):
        kw[name] = Hlc.unpack(kw[name])
    kw["ended_hlc"] = Hlc.unpack(kw["ended_hlc"]) if kw["ended_hlc"] is not None else None
    bids, declines, executions = kw["bids"], kw["declines"], kw["executions"]
    kw["rejected"] = {(a, same(node)): why for a, node, why in kw["rejected"]}
    kw["bids"], kw["declines"], kw["executions"] = {}, {}, {}
    job = Job(**kw)
    for bid in (_unflat(Bid, b) for b in bids):
        bid.node = same(bid.node)
        job.bids[(bid.attempt, bid.node)] = bid
    for decline in (_unflat(Decline, d) for d in declines):
        decline.node = same(decline.node)
        job.declines[(decline.attempt, decline.node)] = decline
    for execution in (_unflat(Execution, e) for e in executions):
        execution.node, execution.job_id = same(execution.node), job.id
        job.executions[execution.id] = execution
    return job


def summary_from(row: bytes) -> EndedJob:
    """An ended job's summary from its stored row (`_job_row`)."""
    kw = _named(_unpack(row), _ENDED_FIELDS, "EndedJob")
    for name in ("status", "reason", "name", "engine"):
        kw[name] = _word(kw[name])
    kw["created_hlc"] = Hlc.unpack(kw["created_hlc"])
    kw["executions"] = tuple(kw["executions"])
    kw["execution_counts"] = tuple((_word(s), n) for s, n in kw["execution_counts"])
    kw["last_key"] = tuple(kw["last_key"])
    kw["contrib"] = tuple((node, c, f) for node, c, f in kw["contrib"])
    kw["lost"] = tuple(_events(kw["lost"]))
    kw["evidence"] = tuple((author, _word(why), n) for author, why, n in kw["evidence"])
    return EndedJob(**kw)


def execution_from(row: bytes) -> Execution:
    """An ended job's execution from its stored row (`_execution_row`)."""
    execution = _unflat(Execution, _unpack(row))
    execution.status = _word(execution.status)
    execution.reason = _word(execution.reason)
    return execution


def _word(value: Any) -> Any:
    """Short strings repeated across jobs (statuses, reasons, engines) as one object."""
    return sys.intern(value) if isinstance(value, str) and len(value) <= 64 else value
