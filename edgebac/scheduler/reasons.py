"""Why nodes decline: short categories that travel in `BidDeclined.reason`, and their summary.

Categories are few and fixed so that a requester can say "3 nodes: 2 lack memory, 1 label
mismatch"; the specific detail (which label, how much memory) rides in `detail`. `busy` is the
one transient category: the node could run the job but other work holds the resources now, and
it bids in the same round once they free up (`lack memory` means it never could).
"""

from __future__ import annotations

from collections import Counter

from edgebac.scheduler.state import Job

ENGINE_DISABLED = "engine disabled"
NETWORK_NOT_ALLOWED = "network not allowed"
LABEL_MISMATCH = "label mismatch"
IMAGE_NOT_ALLOWED = "image not allowed"
IMAGE_NOT_PRESENT = "image not present"
MODULE_NOT_ALLOWED = "module not allowed"
INPUT_NOT_ALLOWED = "input not allowed"
POLICY = "declined by policy"
BAD_CLIENT_SIGNATURE = "bad client signature"
CLIENT_NOT_ALLOWED = "client not allowed"
VOUCHED_NOT_ALLOWED = "vouched jobs not allowed"
BUSY = "busy"
TRANSIENT = frozenset({BUSY})
LACK = {
    "cpu_millis": "lack cpu",
    "memory_bytes": "lack memory",
    "disk_bytes": "lack disk",
    "gpu": "lack gpu",
}


def summarize_declines(job: Job, attempt: int | None = None) -> str:
    """`3 nodes: 2 lack memory, 1 label mismatch` for a round (default: the current one)."""
    attempt = job.attempt if attempt is None else attempt
    reasons = Counter(
        d.reason for (a, n), d in job.declines.items() if a == attempt and (a, n) not in job.bids
    )
    return _summary(reasons)


def waiting_reason(job: Job) -> str:
    """What a live job that is not running all it needs waits for: `needs 3 nodes, 2 bid`,
    then the declines that stand (`; 1 node: 1 label mismatch`). A node that declined as busy
    is still deciding (it bids once its resources free up): counted, its reason left out.
    When nobody bid and nobody is busy, the declines say it all: `3 nodes: 3 lack memory`."""
    declines = job.round_declines()
    settled = Counter(d.reason for d in declines if d.reason not in TRANSIENT)
    busy = len(declines) - sum(settled.values())
    bid = 0
    if job.spec is not None and job.spec.type == "batch":
        count = job.spec.count
        bid = len(_bidders(job))
        head = f"needs {count} node{'s' if count != 1 else ''}, {bid} bid"
    else:
        head = "waiting for bids"
    if busy:
        head += f", {busy} busy"
    if not settled:
        return head
    if not bid and not busy:
        return _summary(settled)
    return f"{head}; {_summary(settled)}"


def _bidders(job: Job) -> set[bytes]:
    """Nodes that run or ran the job with a counted result, or whose bid is still undecided."""
    counted = {e.node for e in job.counted()}
    running = {e.node for e in job.executions.values() if e.active} | counted
    undecided = {b.node for b in job.round_bids() if not job.decided(b.attempt, b.node)}
    return running | undecided


def _summary(reasons: Counter[str]) -> str:
    if not reasons:
        return "no node declined"
    total = sum(reasons.values())
    parts = [f"{n} {reason}" for reason, n in sorted(reasons.items(), key=lambda i: (-i[1], i[0]))]
    return f"{total} node{'s' if total != 1 else ''}: {', '.join(parts)}"
