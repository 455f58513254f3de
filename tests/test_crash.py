"""SIGKILL an appending process at random instants: the log must stay valid and lose nothing acked.

tests/append_loop.py appends to one data directory and prints `ack <seq> <id>` for each event
once `append` has returned. After every kill the log is reopened and re-verified, and every event
ever acknowledged, across all the runs so far, must be stored under its seq with that exact id.
A deliberately broken store (acknowledging before it commits) shows that this check has teeth.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import sqlite3
import sys
import time
from pathlib import Path

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.store import EventLog
from tests.procs import Nodes, nodes_fixture, run_edgebac

APPEND_LOOP = Path(__file__).with_name("append_loop.py")
ACK = re.compile(r"^ack (\d+) ([0-9a-f]{64})\n$")
FIRST_ACK = re.compile(r"^ack ")
KILLS = 20
BROKEN_MAX_KILLS = 10

procs = nodes_fixture("procs")


def run_and_kill(procs: Nodes, data_dir: Path, rng: random.Random, *flags: str) -> dict[int, str]:
    """One run of the append loop, SIGKILLed at a random instant; returns what it acknowledged."""
    seed = rng.getrandbits(32)
    proc = procs.process([sys.executable, str(APPEND_LOOP), str(data_dir), str(seed), *flags])
    if rng.random() < 0.2 and (data_dir / "events.db").exists():
        # Sometimes anywhere from start-up (log recovery, opening) to well into appending.
        time.sleep(rng.uniform(0, 0.45))
    else:
        proc.wait_for_line(FIRST_ACK, timeout=20)
        time.sleep(rng.uniform(0, 0.08))  # the random moment of the crash, not a wait
    assert proc.kill() == -signal.SIGKILL, proc.stderr  # died of the kill, not of an error
    acks = {}
    for line in proc.lines():
        match = ACK.match(line)  # a line cut short by the kill was never acknowledged
        if match:
            acks[int(match.group(1))] = match.group(2)
    return acks


async def reopen(db: Path) -> tuple[dict[bytes, int], int]:
    """Open the log as a node would after the crash: its version vector and event count."""
    log = await EventLog.open(db, HybridClock(300_000))
    try:
        return log.version_vector(), await log.count()
    finally:
        await log.close()


def stored_ids(db: Path) -> dict[int, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {seq: id_.hex() for seq, id_ in conn.execute("SELECT seq, id FROM events")}
    finally:
        conn.close()


def lost_acks(db: Path, acked: dict[int, str]) -> dict[int, str]:
    """Acknowledged events that are not stored, or stored with another id."""
    held = stored_ids(db)
    return {seq: id_ for seq, id_ in acked.items() if held.get(seq) != id_}


def test_sigkill_never_loses_acknowledged_events(procs, tmp_path):
    seed = random.SystemRandom().getrandbits(32)
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    db = data_dir / "events.db"
    acked: dict[int, str] = {}
    for kill in range(KILLS):
        where = f"seed {seed}, kill {kill + 1}"
        new = run_and_kill(procs, data_dir, rng)
        for seq, id_ in new.items():
            assert acked.setdefault(seq, id_) == id_, (
                f"{where}: seq {seq} acknowledged again with another id"
            )
        acked.update(new)

        vector, count = asyncio.run(reopen(db))
        assert len(vector) == 1, where  # one author: the data dir's own key
        assert list(vector.values()) == [count], f"{where}: chain is not gapless from seq 1"

        verify = run_edgebac("log", "verify", "--data-dir", data_dir)
        assert verify.returncode == 0, f"{where}:\n{verify.stdout}{verify.stderr}"

        lost = lost_acks(db, acked)
        assert not lost, f"{where}: {len(lost)} acknowledged events lost, e.g. seq {min(lost)}"
    assert len(acked) > KILLS  # the runs did append, and the log grew across kills
    assert max(acked) <= count


def test_the_check_catches_a_store_that_acknowledges_before_commit(procs, tmp_path):
    rng = random.Random(2)
    data_dir = tmp_path / "data"
    db = data_dir / "events.db"
    acked: dict[int, str] = {}
    for _ in range(BROKEN_MAX_KILLS):
        acked.update(run_and_kill(procs, data_dir, rng, "--ack-before-commit"))
        if lost_acks(db, acked):
            return
    raise AssertionError(f"{BROKEN_MAX_KILLS} kills of a lying store and no lost event noticed")
