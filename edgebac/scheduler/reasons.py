"""Why nodes decline: short categories that travel in `BidDeclined.reason`, and their summary.

Categories are few and fixed so that a requester can say "3 nodes: 2 lack memory, 1 label
mismatch"; the specific detail (which label, how much memory) rides in `detail`.
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
    if not reasons:
        return "no node declined"
    total = sum(reasons.values())
    parts = [f"{n} {reason}" for reason, n in sorted(reasons.items(), key=lambda i: (-i[1], i[0]))]
    return f"{total} node{'s' if total != 1 else ''}: {', '.join(parts)}"
