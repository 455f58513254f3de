"""What pruning the log changes in the projection, and how a fold starts from a horizon.

Pruning removes the events of jobs that ended long ago (`eventlog.horizon`): the projection
forgets those jobs (`forget`) and keeps what they added to their nodes (reputation, when each
node was last heard from), which the horizon carries from then on. A whole-log fold of the
kept events started from the horizon (`start_from`) gives the state the node had just after
it pruned: the same state hash. What the state hash covers after pruning: every job the kept
events created, every node's newest announcement, newest event (kept or pruned) and lost
marks, and each node's reputation over the pruned and the kept jobs alike.

Like `checkpoint`, this reads and sets the projection's private fields: it is part of the
projection, kept apart for size.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgebac.eventlog.horizon import Horizon
from edgebac.scheduler.projection import Projection

Reputation = dict[bytes, tuple[int, int]]


def prunable(p: Projection, job_id: str) -> bool:
    """Let go of (an ended job's summary only) and not about to be folded again."""
    return (
        job_id in p.evicted
        and job_id not in p.needs_reload
        and job_id not in p.jobs
        and job_id not in p._buckets
    )


def forget(p: Projection, job_ids: Iterable[str]) -> tuple[list[str], Reputation]:
    """Drop the ended jobs whose events are being pruned; returns the ids dropped (those
    `prunable` still) and what they add to each node's reputation, for the horizon. The
    reputations themselves do not change: the horizon goes on counting them."""
    gone: list[str] = []
    reputation: Reputation = {}
    for job_id in job_ids:
        if not prunable(p, job_id):
            continue
        record = p.evicted.pop(job_id)
        if record is None:
            continue
        for node, completed, failed in record.summary.contrib:
            c, f = reputation.get(node, (0, 0))
            reputation[node] = (c + completed, f + failed)
        p._late_lost.pop(job_id, None)
        p._evidence.pop(job_id, None)
        gone.append(job_id)
    return gone, reputation


def start_from(p: Projection, horizon: Horizon) -> None:
    """Before a whole-log fold of a pruned log: what the pruned events added to the nodes."""
    for node, (completed, failed) in horizon.reputation.items():
        rep = p._rep.setdefault(node, [0, 0])
        rep[0] += completed
        rep[1] += failed
    for author, hlc in horizon.heard.items():
        p._node(author).heard_from(hlc)
        p._newest = max(p._newest, hlc)
