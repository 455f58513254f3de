"""A real node that prunes its log (`--retain-log`): the events of jobs ended before its
horizon go (written to the archive first), its state is the one the kept events and the
horizon give, a restart from the checkpoint or from the whole log reaches it again, `edgebac
log verify` checks every chain from its newest pruned event, and nothing but pruning may
delete an event."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
import urllib.request

import pytest
from biglog import EVENTS_PER_JOB, noop_history, write_history

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import decode
from edgebac.eventlog.horizon import Horizon
from edgebac.eventlog.offline import open_readonly, stored_horizon
from edgebac.eventlog.store import EventLog
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.pruning import start_from
from tests.procs import nodes_fixture, run_edgebac

nodes = nodes_fixture()
GC = ("node", "gc", "--data-dir")
JOBS = 300  # ended long ago: the history's clock is 2023's


async def ingest(data_dir, events) -> None:
    log = await EventLog.open(data_dir / "events.db", HybridClock(60_000))
    try:
        report = await log.ingest([e.raw for e in events])
        assert not report.errors, report.errors[:3]
    finally:
        await log.close()


def info(node) -> dict:
    status, body = node.get_json("/api/v1/node?state_hash=1")
    assert status == 200, body
    return body


def horizon_of(data_dir) -> Horizon | None:
    conn = open_readonly(data_dir / "events.db")
    try:
        return stored_horizon(conn)
    finally:
        conn.close()


def folded_from_file(data_dir) -> str:
    """The state hash of a fold of the node's whole stored log, from its horizon."""
    p = Projection()
    horizon = horizon_of(data_dir)
    if horizon is not None:
        start_from(p, horizon)
    with sqlite3.connect(data_dir / "events.db") as conn:
        raws = [raw for (raw,) in conn.execute("SELECT raw FROM events ORDER BY pos")]
    p.apply(decode(raw) for raw in raws)
    return p.state_hash()


def wait_pruned(node, events_before: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = info(node)
        if now["events"] < events_before and now["pruning"]["jobs"] > 0:
            return now
        time.sleep(0.2)
    raise AssertionError(f"nothing pruned in {timeout} s: {info(node)}\n{node.stderr}")


@pytest.fixture
def history(tmp_path):
    """A data dir whose log holds JOBS ended jobs, folded once (its checkpoint's rows hold
    the ended jobs: only those are pruned)."""
    data_dir = tmp_path / "n"
    data_dir.mkdir(mode=0o700)
    asyncio.run(write_history(data_dir, JOBS))
    return data_dir


def first_fold(nodes, data_dir) -> int:
    node = nodes.start(data_dir)
    events = info(node)["events"]
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    return events


def test_a_pruning_node_keeps_its_state_and_its_log_verifies(nodes, history, tmp_path):
    """The first start folds the log and checkpoints the ended jobs; the second prunes them."""
    events = first_fold(nodes, history)
    assert events >= JOBS * EVENTS_PER_JOB
    # What would go, and an archive of it made by hand first, as an operator would.
    said = run_edgebac(*GC, history, "--retain-log", "1h", "--dry-run", "--output", "json")
    assert said.returncode == 0, said.stderr
    would = json.loads(said.stdout)["log"]
    exported = run_edgebac(
        "log",
        "export",
        "--data-dir",
        history,
        "--retain-log",
        "1h",
        "--out",
        tmp_path / "by-hand.db",
    )
    assert exported.returncode == 0, exported.stderr
    assert f"wrote {would['events']} events of {would['jobs']} jobs" in exported.stdout
    refused = run_edgebac(*GC, history, "--retain-log", "1h")
    assert refused.returncode == 2
    assert "add --dry-run" in refused.stderr
    archive = tmp_path / "archive"
    node = nodes.start(history, "--retain-log", "1h", "--log-archive", str(archive))
    pruned = wait_pruned(node, events)
    listed = node.get_json("/api/v1/jobs?limit=1")[1]["total"]
    assert node.stop(signal.SIGTERM) == 0, node.stderr

    horizon = horizon_of(history)
    assert horizon is not None
    assert horizon.jobs == pruned["pruning"]["jobs"] >= JOBS - 40  # all but the held ones
    assert listed == JOBS - horizon.jobs  # pruned jobs are gone from the node's state
    with sqlite3.connect(history / "events.db") as conn:
        kept = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert kept <= events + 2 - horizon.events  # (+ this start's announcement, at most two)
    assert horizon.events >= horizon.jobs * (EVENTS_PER_JOB - 1)
    assert (horizon.jobs, horizon.events) == (would["jobs"], would["events"])
    said = run_edgebac(*GC, history, "--retain-log", "1h", "--dry-run", "--output", "json")
    assert json.loads(said.stdout)["log"]["events"] == 0  # nothing is left to prune
    # The state the node had is the one the kept events give, folded from the horizon.
    assert pruned["state_hash"] == folded_from_file(history)

    # The archive holds every pruned event, each as signed.
    with sqlite3.connect(next(archive.glob("pruned-*.db"))) as conn:
        rows = conn.execute("SELECT raw, job_id FROM events").fetchall()
    assert len(rows) == horizon.events
    with sqlite3.connect(tmp_path / "by-hand.db") as conn:
        assert sorted(conn.execute("SELECT raw, job_id FROM events").fetchall()) == sorted(rows)
    assert {decode(raw).job_id for raw, _ in rows} == {job_id for _, job_id in rows}

    # A restart from the checkpoint, and one from the whole kept log, agree with the file.
    node = nodes.start(history, "--retain-log", "1h")
    from_checkpoint = info(node)["state_hash"]
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert "checkpoint: started from" in node.stderr
    assert from_checkpoint == folded_from_file(history)
    with sqlite3.connect(history / "events.db") as conn:
        conn.execute("DELETE FROM checkpoint")
    node = nodes.start(history)
    whole = info(node)["state_hash"]
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert "checkpoint: started from" not in node.stderr
    assert whole == folded_from_file(history)

    done = run_edgebac("log", "verify", "--data-dir", history, "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ok": true' in done.stdout
    assert f'"pruned": {{"events": {horizon.events}' in done.stdout


def test_only_pruning_deletes_events_and_verify_finds_any_other_gap(nodes, history):
    events = first_fold(nodes, history)
    node = nodes.start(history, "--retain-log", "1h")
    wait_pruned(node, events)
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert run_edgebac("log", "verify", "--data-dir", history).returncode == 0
    heads = horizon_of(history).heads
    with sqlite3.connect(history / "events.db") as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events WHERE pos = 1")
        # Someone with the file drops the trigger and removes an event pruning did not:
        # the first of a chain nothing was pruned from.
        conn.execute("DROP TRIGGER events_delete_only_pruned")
        authors = [a for (a,) in conn.execute("SELECT DISTINCT author FROM events")]
        (unpruned,) = [a for a in authors if a not in heads]  # the node's own
        conn.execute("DELETE FROM events WHERE author = ? AND seq = 1", (unpruned,))
    done = run_edgebac("log", "verify", "--data-dir", history)
    assert done.returncode == 1, done.stdout
    assert "gap, expected seq 1" in done.stdout

    with sqlite3.connect(history / "events.db") as conn:  # a horizon edited by hand
        (body,) = conn.execute("SELECT body FROM horizon").fetchone()
        edited = body[:-1] + bytes([body[-1] ^ 1])
        conn.execute("UPDATE horizon SET body = ?", (edited,))
    done = run_edgebac("log", "verify", "--data-dir", history)
    assert done.returncode == 1, done.stdout
    assert "horizon: its signature is not this node's" in done.stdout


def received(node) -> int:
    return info(node)["gossip"]["wire_bytes_received"]


def post_events(node, events) -> None:
    for at in range(0, len(events), 100):
        body = json.dumps({"events": [e.raw.hex() for e in events[at : at + 100]]}).encode()
        request = urllib.request.Request(
            node.url + "/api/v1/events", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert not json.loads(response.read())["rejected"]


def test_a_node_behind_a_pruned_peer_is_not_sent_what_it_cannot_take(nodes, tmp_path):
    """A peer that pruned gives a chain only whole: a node behind it that does not start
    again from its horizon (node.rejoin: here its quorum of 2 seeds is not reached) gets each
    chain up to its first pruned event and nothing after it, not pages it must refuse, round
    after round."""
    data_dir = tmp_path / "a"
    data_dir.mkdir(mode=0o700)
    history = [e for batch in noop_history(300) for e in batch]
    first, later = history[: 250 * EVENTS_PER_JOB], history[250 * EVENTS_PER_JOB :]
    asyncio.run(ingest(data_dir, first))
    events = first_fold(nodes, data_dir)
    a = nodes.start(data_dir, "--retain-log", "1h")
    wait_pruned(a, events)
    post_events(a, later)  # the same chains go on past what was pruned
    joiner = tmp_path / "b"
    joiner.mkdir(mode=0o700)
    alone = nodes.start(joiner)  # its log holds its own announcement: not a new node
    assert alone.stop(signal.SIGTERM) == 0, alone.stderr
    b = nodes.start(joiner, "--peers", a.url.split("//", 1)[1], "--join-quorum", "2")
    assert "join:" not in b.stderr
    time.sleep(3)  # what it can take, it has by now
    before, at = received(b), time.monotonic()
    time.sleep(5)
    rate = (received(b) - before) / (time.monotonic() - at)
    assert rate < 8_000, rate  # exchanges of sums only, not the later jobs' events again
    assert info(a)["pruning"]["asked_for_pruned"] > 0
    assert info(b)["events"] < len(later)
