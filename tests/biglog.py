"""Long histories of noop jobs for start-up tests and `bench/history.py`: a requester and a
compute node of their own (the harness World: the scheduler's decisions, really signed),
six events a job as a node writes them, ingested into a data dir's log before a node starts.

    await write_history(data_dir, jobs=500)  # about 3,000 events
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from scheduler_harness import World

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import Event
from edgebac.eventlog.store import EventLog
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.retention import Retention
from edgebac.scheduler.spec import parse_spec

NOOP = parse_spec({"engine": {"type": "noop", "stdout": "history"}, "retries": 0}).to_dict()
NOWHERE = ["127.0.0.1:9"]  # the discard port: dialling these members fails at once
EVENTS_PER_JOB = 6
BATCH_JOBS = 500


def noop_history(jobs: int) -> Iterator[list[Event]]:
    """Batches of events: two announcements, then `jobs` noop jobs, each created, bid on,
    accepted, started, published and completed. Memory stays small whatever `jobs` is."""
    w = World(state=Projection(Retention(ended_ms=0, ended_max=0)))
    for who, role in (("history-requester", "requester"), ("history-compute", "compute")):
        body = {**w._announcement(who, (role,)), "addresses": NOWHERE, "executors": ["noop"]}
        w.emit(who, "NodeAnnounced", body)
    for i in range(jobs):
        w.submit("history-requester", f"h{i}", NOOP)
        w.compute_step("history-compute")
        w.advance(10)
        w.requester_step("history-requester")
        (execution,) = w.state.jobs[w.jid(f"h{i}")].active()
        w.start("history-compute", execution.id)
        w.publish("history-compute", execution.id)
        w.requester_step("history-requester")
        w.job_ids.clear()
        if len(w.log) >= BATCH_JOBS * EVENTS_PER_JOB:
            yield w.log
            w.log = []
    if w.log:
        yield w.log


async def write_history(data_dir: Path, jobs: int) -> int:
    """Ingest `noop_history(jobs)` into the log of `data_dir` (a node's, stopped); returns how
    many events the log holds then."""
    log = await EventLog.open(data_dir / "events.db", HybridClock(60_000))
    try:
        for batch in noop_history(jobs):
            report = await log.ingest([event.raw for event in batch])
            assert not report.errors, report.errors[:3]
        return await log.count()
    finally:
        await log.close()
