"""Evidence in a whole log: the events that counted for nothing, for `edgebac log verify`.

The log is folded as a node folds it (jobs that ended a while ago let go of, and read back
when a late event may change them), so memory stays bounded on logs of millions of events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edgebac.eventlog.encoding import Event
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.retention import Retention

RETENTION = Retention(ended_ms=60_000, ended_max=1_000)
BATCH = 5_000


def evidence_of(
    events: Iterable[Event], job_events: Callable[[str], list[Event]]
) -> dict[bytes, dict[str, int]]:
    """Per author, its events that counted for nothing, by reason. `events` in an order that
    keeps each author's chain order (the log's arrival order does); `job_events(job_id)` reads
    all of one job's events back (as `EventLog.by_job`)."""
    projection = Projection(RETENTION)
    batch: list[Event] = []

    def fold() -> None:
        projection.apply(batch)
        batch.clear()
        while projection.needs_reload:
            job_id = min(projection.needs_reload)
            projection.reload(job_id, job_events(job_id))

    for event in events:
        batch.append(event)
        if len(batch) >= BATCH:
            fold()
    fold()
    return projection.evidence()
