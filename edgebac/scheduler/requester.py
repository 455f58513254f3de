"""The requester's decisions: (projected state, now, me) -> the job events to append next.

`decide` is pure and idempotent: it looks only at jobs whose requester is `me`, and what it
returns becomes visible in the state once appended and applied, after which the same call
returns nothing new. It plans one step per job per call (a timeout, then the retry round it
causes, come from two calls): the runner calls it again after applying what it returned.

Choices where the issue is silent:
- A retry always opens a new bid round (`BidsRequested`, attempt = number of failed executions)
  so nodes bid with fresh free resources; bids outranked earlier were already rejected.
- A batch round closes (winners are picked) when every eligible compute node answered, or when
  the bid window ends; a first round also as soon as `count` usable bids are in (fast: compute
  nodes hold back there so that the best bids come first, see `compute`). A retry round never
  closes early, so that every eligible node can bid and ranking prefers nodes that have not
  failed the job (with one node, it retries there). After that, late usable bids fill slots
  still open. An ops round accepts every usable bid at once; it closes the same way.
- The retry budget counts failed or lost executions (a non-zero exit code is a failure): more
  than `retries` of them fail the job. A failure its node marks `permanent` (an invalid module:
  it would fail on every node) fails the job at once, saying why it was not retried.
- An execution times out `timeout_s + grace_ms` after its acceptance (staging inputs counts).
- A job with open slots and no usable bid fails `timeout_s` after its current round opened.
- Deadlines count from the requester's own wall clock at the event that starts them (`wall_ms`
  in JobCreated, BidsRequested and BidAccepted; see `jobfold.wall_ms`), compared with the
  `now_ms` it decides at: a future-dated event from another node drags the hybrid clock, and so
  every hlc this node writes, up to the skew tolerance ahead; deadlines measured from hlcs would
  stretch by as much. Still a pure function of the log and `now_ms`.
- An ops job completes once its round is closed, nothing is running, and at least one node
  succeeded.
- Accept hooks: with `config.hook`, a bid is usable only once the shell passed a `Verdict`
  for it (see `bids_awaiting_verdict`); a refusal rejects the bid with the hook's reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgebac.errors import NotFound
from edgebac.scheduler import events as ev
from edgebac.scheduler.constraints import all_match
from edgebac.scheduler.events import Planned, execution_id
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.ranking import rank, shortfall
from edgebac.scheduler.reasons import summarize_declines
from edgebac.scheduler.state import Bid, Job


@dataclass(frozen=True)
class Verdict:
    """What an accept (or bid) hook answered; the shell runs the hook, decisions read this."""

    accept: bool
    reason: str = ""


VerdictKey = tuple[str, int, bytes]  # (job_id, attempt, node)


@dataclass(frozen=True)
class RequesterConfig:
    bid_window_ms: int = 2_000  # a LAN round trip is ms; this leaves slow nodes time to answer
    grace_ms: int = 30_000  # beyond the job timeout, for staging inputs and publishing
    hook: bool = False  # an accept hook is configured: bids wait for its verdict
    lost_reason: str = "no contact"


@dataclass(frozen=True)
class _Ctx:
    state: Projection
    now_ms: int
    me: bytes
    config: RequesterConfig
    lost: frozenset[bytes]
    verdicts: Mapping[VerdictKey, Verdict] = field(default_factory=dict)


def decide(
    state: Projection,
    now_ms: int,
    me: bytes,
    config: RequesterConfig,
    lost_nodes: frozenset[bytes] | set[bytes] = frozenset(),
    verdicts: Mapping[VerdictKey, Verdict] | None = None,
    job_ids: Iterable[str] | None = None,
) -> list[Planned]:
    """The next events for the jobs `me` requested. `lost_nodes` comes from gossip liveness.

    `job_ids` limits the look to those jobs (the ones whose events changed since the last
    call; the shell looks at all of them now and then, for timeouts); None looks at every
    live job. Lost nodes are always handled, for every job they affect.
    """
    ctx = _Ctx(state, now_ms, me, config, frozenset(lost_nodes), verdicts or {})
    out = _declare_lost(ctx)
    touched = {job_id for _, body in out for job_id in body["job_ids"]}
    for job in _my_live_jobs(ctx, job_ids):
        if job.id not in touched and job.spec is not None:
            out.extend(_decide_job(ctx, job))
    return out


def cancel(state: Projection, job_id: str, reason: str = "") -> list[Planned]:
    """The events that cancel a job (none if it already ended)."""
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if job.terminal:
        return []
    body: dict[str, Any] = {"job_id": job_id}
    if reason:
        body["reason"] = reason
    return [(ev.JOB_CANCELED, body)]


def next_deadline(job: Job, now_ms: int, config: RequesterConfig) -> int | None:
    """The first time after `now_ms` at which time alone may change what `decide` says about
    `job` (its bid window ends, it has waited `timeout_s` for nodes, an execution times out);
    None if no such time is ahead."""
    if job.terminal or job.spec is None:
        return None
    window = job.spec.bid_window_ms or config.bid_window_ms
    limits = [job.round_ms + window, job.round_ms + job.spec.timeout_ms]
    limit = job.spec.timeout_ms + config.grace_ms
    limits += [e.accepted_ms + limit for e in job.active()]
    ahead = [ms for ms in limits if ms > now_ms]
    return min(ahead) if ahead else None


def bids_awaiting_verdict(state: Projection, me: bytes) -> list[tuple[VerdictKey, Bid]]:
    """Bids of the current rounds of my jobs still undecided: what the accept hook should see."""
    out = []
    for job in sorted(state.live.values(), key=lambda j: (j.created_hlc, j.id)):
        if job.requester == me and not job.terminal:
            for bid in job.round_bids():
                if not job.decided(bid.attempt, bid.node):
                    out.append(((job.id, bid.attempt, bid.node), bid))
    return out


def _my_live_jobs(ctx: _Ctx, job_ids: Iterable[str] | None = None) -> list[Job]:
    live = ctx.state.live
    if job_ids is None:
        candidates: Iterable[Job] = live.values()
    else:
        candidates = (job for job_id in set(job_ids) if (job := live.get(job_id)) is not None)
    jobs = [j for j in candidates if j.requester == ctx.me and not j.terminal]
    return sorted(jobs, key=lambda j: (j.created_hlc, j.id))


def _declare_lost(ctx: _Ctx) -> list[Planned]:
    out: list[Planned] = []
    for node in sorted(ctx.lost):
        affected = {e.job_id for e in ctx.state.active_on(node).values()}
        job_ids = [j.id for j in _my_live_jobs(ctx, affected)]
        if job_ids:
            body = {"node": node, "reason": ctx.config.lost_reason, "job_ids": job_ids}
            out.append((ev.NODE_LOST, body))
    return out


def _decide_job(ctx: _Ctx, job: Job) -> list[Planned]:
    assert job.spec is not None
    if timed_out := _timeouts(ctx, job):
        return timed_out
    failures = job.failures()
    if permanent := [e for e in failures if e.permanent]:
        reason = f"not retried: {permanent[0].reason} (it would fail on any node)"
        return [_job_failed(job, reason)]
    if len(failures) > job.spec.retries:
        failed = len(failures)
        reason = f"retry budget spent: {failed} execution{'s' if failed != 1 else ''} failed"
        return [_job_failed(job, reason)]
    if job.spec.type == "batch" and len(job.succeeded()) >= job.spec.count:
        return [(ev.JOB_COMPLETED, {"job_id": job.id})]
    if len(failures) > job.attempt:
        body = {
            "job_id": job.id,
            "attempt": len(failures),
            "reason": failures[-1].reason or "",
            "wall_ms": ctx.now_ms,
        }
        return [(ev.BIDS_REQUESTED, body)]
    if expired := _pending_timeout(ctx, job):
        return expired
    return _select(ctx, job)


def _job_failed(job: Job, reason: str) -> Planned:
    attempts = [
        {"execution_id": e.id, "node": e.node, "attempt": e.attempt, "reason": e.reason or ""}
        for e in job.failures()
    ]
    return (ev.JOB_FAILED, {"job_id": job.id, "reason": reason, "attempts": attempts})


def _timeouts(ctx: _Ctx, job: Job) -> list[Planned]:
    assert job.spec is not None
    out: list[Planned] = []
    limit = job.spec.timeout_ms + ctx.config.grace_ms
    for execution in job.active():
        if ctx.now_ms >= execution.accepted_ms + limit:
            reason = f"timed out: no result {job.spec.timeout_s}s after acceptance"
            body = {"job_id": job.id, "execution_id": execution.id, "reason": reason}
            out.append((ev.EXECUTION_FAILED, body))
    return out


def _window_over(ctx: _Ctx, job: Job) -> bool:
    assert job.spec is not None
    window = job.spec.bid_window_ms or ctx.config.bid_window_ms
    return ctx.now_ms >= job.round_ms + window


def _busy(job: Job, node: bytes) -> bool:
    """The node already runs this job (batch), or ran or runs it (ops: once per node)."""
    assert job.spec is not None
    statuses = ("accepted", "running")
    if job.spec.type == "ops":
        statuses += ("completed",)
    return any(e.node == node and e.status in statuses for e in job.executions.values())


def _eligible_answered(ctx: _Ctx, job: Job) -> bool:
    """Every announced, live compute node that matches the job answered the current round."""
    assert job.spec is not None
    for node, info in ctx.state.nodes.items():
        if "compute" not in info.roles or node in ctx.lost or info.lost_for(ctx.me):
            continue
        if not all_match(job.spec.constraints, info.labels) or _busy(job, node):
            continue
        if not job.answered(node, job.attempt):
            return False
    return True


def _unusable(ctx: _Ctx, job: Job, bid: Bid) -> str | None:
    """Why the requester will not take this bid; "" while its hook verdict is awaited."""
    assert job.spec is not None
    info = ctx.state.nodes.get(bid.node)
    if bid.node in ctx.lost or (info is not None and info.lost_for(ctx.me)):
        return "node lost"
    if _busy(job, bid.node):
        return "node already runs this job"
    if short := shortfall(bid.free, job.spec.claims()):
        return "not enough " + ", ".join(short)
    if info is not None and info.announced and not all_match(job.spec.constraints, info.labels):
        return "label mismatch"
    if ctx.config.hook:
        verdict = ctx.verdicts.get((job.id, bid.attempt, bid.node))
        if verdict is None:
            return ""
        if not verdict.accept:
            return f"accept hook: {verdict.reason or 'declined'}"
    return None


def _reject(job: Job, bid: Bid, reason: str) -> Planned:
    body = {"job_id": job.id, "node": bid.node, "reason": reason, "attempt": bid.attempt}
    return (ev.BID_REJECTED, body)


def _accept(ctx: _Ctx, job: Job, bid: Bid) -> Planned:
    body = {
        "job_id": job.id,
        "node": bid.node,
        "execution_id": execution_id(job.id, bid.attempt, bid.node),
        "attempt": bid.attempt,
        "wall_ms": ctx.now_ms,
    }
    return (ev.BID_ACCEPTED, body)


def _sort_bids(ctx: _Ctx, job: Job) -> tuple[list[Planned], list[Bid], bool]:
    """Rejections of unusable undecided bids, the usable ones ranked, and whether any waits."""
    out: list[Planned] = []
    usable: list[Bid] = []
    waiting = False
    for (attempt, node), bid in sorted(job.bids.items()):
        if job.decided(attempt, node):
            continue
        reason = "bid round is over" if attempt != job.attempt else _unusable(ctx, job, bid)
        if reason:
            out.append(_reject(job, bid, reason))
        elif reason is None:
            usable.append(bid)
        else:
            waiting = True
    failed_here = Counter(e.node for e in job.failures())
    reputations = {b.node: ctx.state.reputation(b.node) for b in usable}
    return out, rank(usable, reputations, failed_here), waiting


def _select(ctx: _Ctx, job: Job) -> list[Planned]:
    """Reject unusable bids, accept the best usable ones once the round may close."""
    assert job.spec is not None
    out, ranked, waiting = _sort_bids(ctx, job)
    closing = _window_over(ctx, job) or _eligible_answered(ctx, job)
    if job.spec.type == "ops":
        if ranked:
            return out + [_accept(ctx, job, bid) for bid in ranked]
        if closing and not waiting and not job.active() and job.succeeded():
            out.append((ev.JOB_COMPLETED, {"job_id": job.id}))
        return out
    need = job.open_slots()
    first_bids_win = job.attempt == 0 and len(ranked) >= need  # a retry round waits for all
    if need and (first_bids_win or closing):
        out.extend(_accept(ctx, job, bid) for bid in ranked[:need])
        out.extend(_reject(job, bid, "outranked") for bid in ranked[need:])
    elif not need:
        out.extend(_reject(job, bid, "enough nodes already run it") for bid in ranked)
    return out


def _pending_timeout(ctx: _Ctx, job: Job) -> list[Planned]:
    """Fail a job that still lacks nodes when its timeout passes since its round opened."""
    assert job.spec is not None
    if job.active() or ctx.now_ms < job.round_ms + job.spec.timeout_ms:
        return []
    if _sort_bids(ctx, job)[1]:
        return []  # a usable bid came in: take it rather than give up
    succeeded = len(job.succeeded())
    if job.spec.type == "ops":
        if succeeded:
            return []
        return [_job_failed(job, f"no node could run it: {summarize_declines(job)}")]
    if succeeded >= job.spec.count:
        return []
    summary = summarize_declines(job) if job.round_declines() else "no usable bids"
    if succeeded:
        reason = f"only {succeeded} of {job.spec.count} nodes could run it: {summary}"
    else:
        reason = f"no node could run it: {summary}"
    return [_job_failed(job, reason)]
