"""Disk bounded by retention, on real nodes (issue 16): pruning gives the log's space back
(the file shrinks, the WAL is emptied, a clean stop leaves neither a big WAL nor the lock
file), and a node restarted with `--retain` sweeps at once, by its own clock for what the log
dates and by mtimes for files: results folders, content blocks and the shard folders they
leave empty, and compiled wasm modules unused within the retention."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

from biglog import write_history

from tests.procs import nodes_fixture, run_edgebac, wait_for
from tests.test_executors_net import JobClient, inline_module

nodes = nodes_fixture()
JOBS = 1000  # ended long ago: the history's clock is 2023's
HOUR_MS = 3_600_000


def info(node) -> dict:
    status, body = node.get_json("/api/v1/node")
    assert status == 200, body
    return body


def log_files(data_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in data_dir.glob("events.db*")}


def pragma(data_dir: Path, name: str) -> int:
    conn = sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def test_a_pruning_node_gives_the_space_back_and_a_clean_stop_leaves_no_wal_nor_lock(
    nodes, tmp_path
):
    data_dir = tmp_path / "n"
    data_dir.mkdir(mode=0o700)
    asyncio.run(write_history(data_dir, JOBS))
    node = nodes.start(data_dir)  # folds the log once: its checkpoint rows the ended jobs
    assert (data_dir / "node.lock").is_file()  # held while it runs
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert not (data_dir / "node.lock").exists()  # a clean stop takes its lock file along
    assert pragma(data_dir, "auto_vacuum") == 2  # a log this release creates: incremental
    conn = sqlite3.connect(data_dir / "events.db", isolation_level=None)
    try:  # as an earlier release wrote it
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
    finally:
        conn.close()
    assert pragma(data_dir, "auto_vacuum") == 0
    before = log_files(data_dir)["events.db"]

    node = nodes.start(data_dir, "--retain-log", "1h")
    wait_for(lambda: info(node)["pruning"]["jobs"] >= JOBS - 50, 30, "the jobs to be pruned")
    # The file shrinks while the node runs: the first prune converts it (VACUUM, it is small)
    # and empties the WAL the prune's transaction filled.
    wait_for(lambda: log_files(data_dir)["events.db"] < before / 2, 10, "events.db to shrink")
    assert pragma(data_dir, "auto_vacuum") == 2  # incremental from now on
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    files = log_files(data_dir)
    assert files.get("events.db-wal", 0) < 64 * 1024, files  # was about the file's size
    assert files["events.db"] < before / 2, (files, before)
    assert not (data_dir / "node.lock").exists()
    done = run_edgebac("log", "verify", "--data-dir", data_dir)
    assert done.returncode == 0, done.stdout + done.stderr

    node = nodes.start(data_dir, "--retain-log", "1h")  # a converted file opens as before
    assert info(node)["events"] > 0
    assert node.stop(signal.SIGTERM) == 0, node.stderr


def backdate(folder: Path, seconds: float) -> None:
    """Every file and folder under `folder` as if written `seconds` ago (what the node's
    clock offset cannot do to the file system)."""
    when = time.time() - seconds
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.utime(Path(root, name), (when, when), follow_symlinks=False)


def test_a_restarted_node_sweeps_at_once_by_its_clock(nodes, tmp_path):
    """Without the first sweep at start it would come after a quarter of the retention (10
    minutes for 1 h); without the node's clock the ended executions would look recent."""
    data_dir = tmp_path / "n"
    node = nodes.start(data_dir)
    jobs = JobClient(node)
    noop = {"engine": {"type": "noop", "stdout": "old"}, "outputs": [{"name": "o", "path": "/o"}]}
    wasm = {"engine": {"type": "wasm", "module": inline_module("hello")}}
    views = [jobs.wait(jobs.submit(spec)) for spec in (noop, wasm)]
    assert [v["status"] for v in views] == ["completed", "completed"], views
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    results = data_dir / "work" / "results"
    blocks = data_dir / "content" / "blocks"
    cache = data_dir / "work" / "cache" / "wasm"
    assert list(results.iterdir())
    assert any(p.is_file() for p in blocks.rglob("*"))
    assert list(cache.iterdir())  # hello.wasm compiled
    backdate(data_dir / "content", 2 * 3600)  # as they will be by the real clock in 2 h
    backdate(cache, 2 * 3600)

    ahead = {"EDGEBAC_TEST_CLOCK_OFFSET_MS": str(2 * HOUR_MS)}
    node = nodes.start(data_dir, "--retain", "1h", env=ahead)
    assert info(node)["retention"]["every_s"] == 600.0
    swept = wait_for(lambda: info(node)["retention"]["last_sweep"], 30, "the first sweep")
    assert not list(results.iterdir()), swept
    assert not [p for p in blocks.rglob("*") if p.is_file()], swept
    assert not list(blocks.iterdir()), swept  # the shard folders emptied went too
    assert not list(cache.iterdir()), swept
    assert swept["cached_modules"] == 1
    assert swept["shard_folders"] >= 1
    jobs = JobClient(node)
    again = jobs.wait(jobs.submit(wasm))  # compiles the module again, into a new shard
    assert again["status"] == "completed", again
    assert list(cache.iterdir())
    assert node.stop(signal.SIGTERM) == 0, node.stderr
