"""`log verify`: every stored row re-checked against its own signed bytes and chain."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.eventlog import offline
from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import Event, seal
from edgebac.eventlog.offline import StoredRow
from edgebac.eventlog.store import EventLog
from edgebac.eventlog.verify import check_rows
from tests.announce import announcement

KEY = SigningKey(b"\x07" * 32)


def row(event: Event, pos: int) -> StoredRow:
    return StoredRow(
        event.author,
        event.seq,
        pos,
        event.id,
        event.hlc.pack(),
        event.type,
        event.job_id,
        event.raw,
    )


async def _make_log(path: Path, n: int) -> list[Event]:
    """`n` events: the announcement that opens the chain, then jobs; events[i] names job j<i>."""
    log = await EventLog.open(path, HybridClock(60_000), KEY)
    try:
        jobs = [("JobCreated", {"job_id": f"j{i}", "spec": {"i": i}}) for i in range(1, n)]
        return await log.append([announcement(), *jobs])
    finally:
        await log.close()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, list[Event]]:
    data_dir = tmp_path_factory.mktemp("sample")
    events = asyncio.run(_make_log(data_dir / "events.db", 5))
    return data_dir, events


def test_clean_rows_pass(sample):
    _, events = sample
    report = check_rows(row(e, i) for i, e in enumerate(events, 1))
    assert report.ok
    assert (report.events, report.authors) == (5, 1)


def test_rewritten_bytes_with_a_matching_id_fail_the_signature(sample):
    _, events = sample
    rows = [row(e, i) for i, e in enumerate(events, 1)]
    raw = rows[2].raw.replace(b"j2", b"j9")
    rows[2] = dataclasses.replace(rows[2], raw=raw, id=hashlib.sha256(raw).digest())
    report = check_rows(rows)
    assert [p.split(": ", 1)[1] for p in report.problems] == [
        "bad_signature: signature does not verify under its author's key"
    ]


def test_columns_that_disagree_with_the_signed_event_are_reported(sample):
    _, events = sample
    rows = [row(e, i) for i, e in enumerate(events, 1)]
    rows[1] = dataclasses.replace(rows[1], type="JobFailed", job_id="other")
    (problem,) = check_rows(rows).problems
    assert "columns type, job_id disagree" in problem


def test_missing_rows_and_swapped_events_break_the_chain(sample):
    _, events = sample
    rows = [row(e, i) for i, e in enumerate(events, 1)]
    assert any("gap, expected seq 3" in p for p in check_rows(rows[:2] + rows[3:]).problems)
    fork = seal(KEY, 2, events[0].id, events[1].hlc, "JobCreated", {"job_id": "x", "spec": {}})
    rows[1] = row(fork, 2)
    (problem,) = check_rows(rows).problems
    assert "#3: prev is not the id of seq 2" in problem


def _tampered_copy(source: Path, dest: Path, needle: bytes, offset: int) -> None:
    shutil.copytree(source, dest)
    db = dest / "events.db"
    data = bytearray(db.read_bytes())
    where = data.find(needle)
    assert where >= 0, "the stored event was not found in the database file"
    data[where + offset] ^= 0x01
    db.write_bytes(bytes(data))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_flipped_byte_of_a_stored_event_is_detected(sample, tmp_path, data):
    data_dir, events = sample
    event = data.draw(st.sampled_from(events))
    offset = data.draw(st.integers(0, len(event.raw) - 1))
    dest = tmp_path / f"copy-{event.seq}-{offset}"
    _tampered_copy(data_dir, dest, event.raw, offset)
    conn = offline.open_readonly(dest / "events.db")
    try:
        report = check_rows(offline.stored_rows(conn))
    finally:
        conn.close()
    assert not report.ok
    assert any(f"#{event.seq}:" in problem for problem in report.problems)


def _verify_cli(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgebac", "log", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_log_verify_command_passes_and_fails(sample, tmp_path):
    data_dir, events = sample
    clean = _verify_cli(data_dir)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.strip().endswith("ok")
    # The first copy of this id in the file is the prev inside event 5's signed bytes.
    _tampered_copy(data_dir, tmp_path / "bad", events[3].id, 0)
    broken = _verify_cli(tmp_path / "bad")
    assert broken.returncode == 1
    assert "#5: stored id is not the hash of the stored bytes" in broken.stdout
    assert broken.stdout.strip().endswith("1 problem(s)")
    assert "Traceback" not in broken.stderr
