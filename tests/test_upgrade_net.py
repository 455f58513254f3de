"""Upgrades in place: a data directory an earlier release wrote opens with this code, keeps its
history, gets its checkpoint on its first start, and starts from it on the next."""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from edgebac.eventlog.encoding import decode
from edgebac.scheduler.projection import Projection
from tests.procs import nodes_fixture, run_edgebac

nodes = nodes_fixture()
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "datadirs" / "landed-2026-12-01"
STARTED = re.compile(r"checkpoint: started from log position (\d+)")


def copied(tmp_path: Path) -> Path:
    data_dir = tmp_path / "n"
    shutil.copytree(FIXTURE, data_dir)
    data_dir.chmod(0o700)
    (data_dir / "node.key").chmod(0o600)  # git keeps no modes
    return data_dir


def whole_fold(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / "events.db") as conn:
        raws = [raw for (raw,) in conn.execute("SELECT raw FROM events ORDER BY pos")]
    return Projection.from_events(decode(raw) for raw in raws).state_hash()


def test_an_earlier_releases_data_dir_opens_keeps_its_jobs_and_gets_a_checkpoint(nodes, tmp_path):
    data_dir = copied(tmp_path)
    node = nodes.start(data_dir, listen="127.0.0.9:0")
    assert node.short_id == "95237e7dfe46"  # its identity, not a new one
    status, page = node.get_json("/api/v1/jobs")
    assert status == 200
    assert sorted(job["status"] for job in page["jobs"]) == ["canceled"] + ["completed"] * 4
    status, info = node.get_json("/api/v1/node?state_hash=1")
    assert info["state_hash"] == whole_fold(data_dir)
    outputs = []
    for job in page["jobs"]:
        if job["status"] == "completed":
            got = run_edgebac(
                "job", "get", job["id"], "--api", node.url, "--output-dir", tmp_path / job["id"]
            )
            assert got.returncode == 0, got.stderr
            outputs += [p.read_text() for p in (tmp_path / job["id"]).rglob("stdout")]
    assert sorted(outputs) == ["old 1", "old 2", "old 3", "vouched"]
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert not STARTED.search(node.stderr)  # the first start folded the whole log

    again = nodes.start(data_dir, listen="127.0.0.9:0")
    assert STARTED.search(again.stderr), again.stderr
    assert again.get_json("/api/v1/node?state_hash=1")[1]["state_hash"] == whole_fold(data_dir)
    assert again.stop(signal.SIGTERM) == 0
    verified = run_edgebac("log", "verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip().endswith("ok")
    with sqlite3.connect(data_dir / "events.db") as conn:  # its trigger is the pruning one now
        triggers = {
            n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        }
        assert "events_no_delete" not in triggers
        assert "events_delete_only_pruned" in triggers
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events WHERE pos = 1")
