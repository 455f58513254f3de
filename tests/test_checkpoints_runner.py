"""The runner's checkpoints on a real log file: when one is due, that a periodic one and the
incremental one after it load back to the state folded, and that a refused one says why."""

from __future__ import annotations

import sqlite3
import time

import biglog
import pytest

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.store import EventLog
from edgebac.node import checkpoints
from edgebac.node.checkpoints import Checkpoints
from edgebac.node.runner import RETENTION
from edgebac.scheduler.projection import Projection


@pytest.fixture
async def log(tmp_path):
    log = await EventLog.open(tmp_path / "events.db", HybridClock(60_000))
    yield log
    await log.close()


async def ingest(log: EventLog, state: Projection, batch) -> None:
    report = await log.ingest([event.raw for event in batch])
    assert not report.errors
    state.apply(batch)


async def test_periodic_then_incremental_checkpoints_load_back(log, monkeypatch, capsys):
    monkeypatch.setattr(biglog, "BATCH_JOBS", 40)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_EVENTS", 200)
    state, cp = Projection(RETENTION), Checkpoints(log, RETENTION)
    batches = biglog.noop_history(120)
    await ingest(log, state, next(batches))
    assert await cp.load() == (None, 0)  # none yet: fold the whole log
    assert not cp.due()
    cp.started(0, log.last_pos, time.monotonic())
    assert cp.due()  # 240 events folded, more than 200
    cp.take(state)
    assert not cp.due()  # one at a time; and nothing folded since
    await cp.close(lambda: state)
    for batch in batches:  # jobs let go of since: only their rows are written
        await ingest(log, state, batch)
        cp.since += len(batch)
    cp.take(state)
    await cp.close(lambda: state)
    loaded, pos = await Checkpoints(log, RETENTION).load()
    assert pos == log.last_pos
    assert loaded is not None
    assert loaded.state_hash() == state.state_hash()
    assert sorted(loaded.evicted) == sorted(state.evicted)
    assert capsys.readouterr().err == ""


async def test_a_refused_checkpoint_is_said_in_one_line(log, capsys):
    state, cp = Projection(RETENTION), Checkpoints(log, RETENTION)
    await ingest(log, state, next(biglog.noop_history(10)))
    cp.started(0, log.last_pos, time.monotonic())
    await cp.close(lambda: state)  # a clean stop takes one
    with sqlite3.connect(log.path) as conn:
        conn.execute("UPDATE checkpoint SET state_hash = ?", ("0" * 64,))
    assert await Checkpoints(log, RETENTION).load() == (None, 0)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("checkpoint refused (state hash ")
    assert line.endswith("): folding the whole log")


async def test_a_stop_after_a_few_events_takes_no_checkpoint(log, monkeypatch):
    """Any checkpoint streams every ended row's digest (0.15 s at 1M events): a stop after
    fewer than STOP_SKIP_EVENTS leaves them to the next start's fold; after more, it takes one."""
    monkeypatch.setattr(biglog, "BATCH_JOBS", 100)  # batches of 600 events
    state, cp = Projection(RETENTION), Checkpoints(log, RETENTION)
    batches = biglog.noop_history(400)
    await ingest(log, state, next(batches))
    cp.started(0, log.last_pos, time.monotonic())
    await cp.close(lambda: state)  # the first after a whole fold: always
    _, first = await Checkpoints(log, RETENTION).load()
    assert first == log.last_pos
    more = next(batches)
    await ingest(log, state, more)
    cp.since += len(more)
    assert 0 < cp.since < checkpoints.STOP_SKIP_EVENTS
    await cp.close(lambda: state)
    loaded, pos = await Checkpoints(log, RETENTION).load()
    assert pos == first < log.last_pos  # the next start folds them after it
    assert loaded is not None
    cp.since = checkpoints.STOP_SKIP_EVENTS
    await cp.close(lambda: state)
    _, pos = await Checkpoints(log, RETENTION).load()
    assert pos == log.last_pos
