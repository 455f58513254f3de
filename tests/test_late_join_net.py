"""A node joining a network whose nodes pruned their logs starts from the present (issue 16):
it adopts the horizon its seeds agree on and the events they kept below it, syncs on from
the horizon's heads, and is useful at once; seeds that disagree keep it from starting.

The seeds hold the same history (300 noop jobs ended in 2023, the node's own code wrote it)
and prune it with `--retain-log 1h`."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import pytest
from biglog import EVENTS_PER_JOB, write_history

from edgebac.eventlog.adopt import comparable
from tests.netfix import host_port
from tests.procs import nodes_fixture, run_edgebac, wait_for
from tests.test_jobs_net import noop, submit, wait_status
from tests.test_pruning_net import first_fold, horizon_of, info, wait_pruned

nodes = nodes_fixture()
JOBS = 300
JOINED = re.compile(r"join: started from the seeds' horizon, with the (\d+) events")


@pytest.fixture
def seeds_dirs(tmp_path):
    """Three data dirs holding the same history, each folded once (so its ended jobs are
    rows of a checkpoint: what pruning takes)."""
    dirs = []
    for name in "abc":
        data_dir = tmp_path / name
        data_dir.mkdir(mode=0o700)
        asyncio.run(write_history(data_dir, JOBS))
        dirs.append(data_dir)
    return dirs


def start_seeds(nodes, dirs, *flags_of):
    """Each seed peered with the ones before it; `flags_of[i]` its own flags."""
    events = [first_fold(nodes, d) for d in dirs]
    started = []
    for index, data_dir in enumerate(dirs):
        peers = ("--peers", ",".join(host_port(s) for s in started)) if started else ()
        started.append(nodes.start(data_dir, *peers, *flags_of[index]))
    for node, before, flags in zip(started, events, flags_of, strict=True):
        if "--retain-log" in flags:
            wait_pruned(node, before)
    return started


def state(node) -> tuple[dict, str]:
    now = info(node)
    return now["version_vector"], now["state_hash"]


def test_a_new_node_starts_from_the_horizon_its_seeds_agree_on(nodes, seeds_dirs, tmp_path):
    prune = ("--retain-log", "1h")
    seeds = start_seeds(nodes, seeds_dirs, prune, prune, prune)
    wait_for(lambda: len({comparable(horizon_of(d)) for d in seeds_dirs}) == 1, 20, "one horizon")
    joiner_dir = tmp_path / "d"
    joiner_dir.mkdir(mode=0o700)
    started = time.monotonic()
    peers = ",".join(host_port(s) for s in seeds)
    # Up to 10 s more when the seeds' cut is about to move (gossip.late): a joiner waits for it.
    d = nodes.spawn(joiner_dir, "--peers", peers, "--labels", "late=yes", *prune).wait_listening(60)
    said = d.wait_for_line(JOINED, 5, "stderr")
    # Useful at once: a job another requester submits, that only it may run, completes.
    job_id = submit(seeds[0], noop(constraints=["late=yes"]))
    view = wait_status(seeds[0], job_id, {"completed", "failed"}, timeout=30)
    useful_s = time.monotonic() - started
    assert view["status"] == "completed", view
    assert [e["node"] for e in view["executions"].values()] == [info(d)["id"]]
    # It holds what the seeds kept, not the history they pruned, and agrees with them.
    wait_for(lambda: state(d) == state(seeds[0]), 30, "the joiner to agree with its seeds")
    assert state(seeds[1]) == state(seeds[0])
    assert info(d)["events"] < JOBS * EVENTS_PER_JOB // 4
    assert comparable(horizon_of(joiner_dir)) == comparable(horizon_of(seeds_dirs[0]))
    print(f"joined and ran a job in {useful_s:.1f} s, {said.group(1)} kept events adopted")
    assert d.stop(signal.SIGTERM) == 0, d.stderr
    verified = run_edgebac("log", "verify", "--data-dir", joiner_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # A restart is a node like any other: nothing is adopted again, the state is the same.
    again = nodes.start(joiner_dir, "--peers", host_port(seeds[0]), *prune)
    assert "join:" not in again.stderr
    wait_for(lambda: state(again) == state(seeds[0]), 30, "the restarted joiner to agree")


def test_seeds_that_disagree_keep_a_new_node_from_starting(nodes, seeds_dirs, tmp_path):
    """One seed pruned, one did not (a seed that lies looks the same to the joiner): with
    every seed reached required to agree, the joiner refuses to start, and says why; told that
    one seed is enough, it starts from the pruned seed's horizon and syncs with both."""
    a, b = start_seeds(nodes, seeds_dirs[:2], ("--retain-log", "1h"), ())
    assert horizon_of(seeds_dirs[1]) is None
    peers = ("--peers", f"{host_port(a)},{host_port(b)}")
    refused_dir = tmp_path / "refused"
    refused_dir.mkdir(mode=0o700)
    refused = nodes.spawn(refused_dir, *peers, "--join-wait", "2s")
    assert refused.wait(30) != 0
    assert "the seeds do not agree on the log's horizon" in refused.stderr, refused.stderr
    assert "no horizon" in refused.stderr
    assert not (refused_dir / "events.db").exists() or info_free_log(refused_dir)
    joined_dir = tmp_path / "quorum"
    joined_dir.mkdir(mode=0o700)
    joined = nodes.spawn(joined_dir, *peers, "--join-quorum", "1").wait_listening(60)
    joined.wait_for_line(JOINED, 5, "stderr")
    assert comparable(horizon_of(joined_dir)) == comparable(horizon_of(seeds_dirs[0]))
    wait_for(lambda: state(joined) == state(a), 30, "the joiner to agree with the pruned seed")


def info_free_log(data_dir) -> bool:
    """A start that failed leaves no events behind."""
    import sqlite3

    with sqlite3.connect(data_dir / "events.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_a_node_back_from_long_offline_starts_again_from_the_horizon(nodes, seeds_dirs, tmp_path):
    """It holds the first 100 of the 300 jobs its seeds pruned since: they give chains only
    whole, so it could never catch up. At start it sets its log aside (kept), adopts their
    horizon, puts its own chain back, and agrees with them."""
    prune = ("--retain-log", "1h")
    a, b = start_seeds(nodes, seeds_dirs[:2], prune, prune)
    back = tmp_path / "back"
    back.mkdir(mode=0o700)
    asyncio.run(write_history(back, 100))
    alone = nodes.start(back)  # it signs its own chain before it goes away
    mine = info(alone)["id"]
    assert alone.stop(signal.SIGTERM) == 0, alone.stderr
    node = nodes.spawn(back, "--peers", f"{host_port(a)},{host_port(b)}").wait_listening(60)
    node.wait_for_line(re.compile(r"join: this node was behind what its seeds pruned"), 5, "stderr")
    assert list(back.glob("events-behind-*.db")), "its old log is kept"
    wait_for(lambda: state(node) == state(a), 30, "the node back to agree with its seeds")
    assert info(node)["version_vector"][mine] >= 2  # its chain goes on: announced twice
    job_id = submit(a, noop())
    assert wait_status(a, job_id, {"completed", "failed"}, timeout=30)["status"] == "completed"
