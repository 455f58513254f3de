"""The log's checkpoint tables on real files: atomic replacement, incremental rows, and every
way a stored checkpoint can stop matching what was written is refused when it is read."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from test_store import open_log

from edgebac.eventlog.checkpoints import (
    _ROWS_BETWEEN_CHECKS,
    BadCheckpoint,
    CheckpointAbandoned,
    CheckpointWrite,
)
from edgebac.eventlog.store import EventLog


def job_row(job_id: str, row: bytes) -> tuple:
    return (job_id, 0, "completed", b"r", None, None, "", row[:3], row)


def write(rows: dict[str, bytes], deleted: tuple[str, ...] = (), full: bool = False):
    """What `write_checkpoint` is handed: a callable that packs (here: made-up bytes), one
    execution per job, and a state hash of the (id, digest) pairs it is handed."""
    jobs = [job_row(job_id, row) for job_id, row in sorted(rows.items())]
    executions = [
        (f"e-{job_id}", job_id, b"n", "completed", "cid", None, 1, b"x") for job_id in rows
    ]
    gone = [*deleted, *rows]

    def state_hash(digests, count: int) -> str:
        pairs = list(digests)
        assert len(pairs) == count
        return repr(pairs)

    return lambda: CheckpointWrite("1:test", b"core", jobs, executions, gone, full, state_hash)


async def stored_rows(log: EventLog) -> list[tuple[str, bytes]]:
    reader = log.ended_reader()
    try:
        return reader.job_rows(list(reader.ids()))
    finally:
        reader.close()


@pytest.fixture
async def log(tmp_path):
    log = await open_log(tmp_path / "a.db")
    await log.append([("Note", {"text": f"n{i}"}) for i in range(3)])
    yield log
    await log.close()


def edit(log: EventLog, sql: str, *params) -> None:
    """Change the file behind the node's back, as a crash, a bug or an operator might."""
    with sqlite3.connect(log.path) as conn:
        conn.execute(sql, params)


async def test_no_checkpoint_then_the_newest_one_with_its_rows(log):
    assert await log.read_checkpoint() is None
    await log.write_checkpoint(2, write({"j-1": b"one", "j-2": b"two"}, full=True))
    await log.write_checkpoint(4, write({"j-3": b"three", "j-1": b"ONE"}, deleted=("j-2",)))
    stored = await log.read_checkpoint()
    pairs = [("j-1", b"ONE"), ("j-3", b"thr")]  # the state hash is of the rows written
    assert (stored.pos, stored.format, stored.state_hash, stored.body) == (
        4,
        "1:test",
        repr(pairs),
        b"core",
    )
    assert (stored.ended_rows, await stored_rows(log)) == (2, [("j-1", b"ONE"), ("j-3", b"three")])
    reader = log.ended_reader()
    try:  # each job's executions went and came with it
        assert reader.execution_row("e-j-2") is None
        assert reader.holding_rows("cid") == [b"x", b"x"]
        assert len(reader.ended_ms()) == 2
    finally:
        reader.close()
    await log.write_checkpoint(4, write({"j-9": b"nine"}, full=True))  # replaces every row
    assert await stored_rows(log) == [("j-9", b"nine")]


async def test_an_incremental_checkpoint_needs_one_to_build_on(log):
    with pytest.raises(Exception, match="no checkpoint to build on"):
        await log.write_checkpoint(2, write({"j-1": b"one"}))
    assert await log.read_checkpoint() is None


async def test_a_write_that_fails_midway_leaves_the_last_checkpoint_whole(log):
    await log.write_checkpoint(2, write({"j-1": b"one"}, full=True))

    def broken() -> CheckpointWrite:
        raise RuntimeError("packing failed")

    with pytest.raises(RuntimeError):
        await log.write_checkpoint(3, broken)
    with pytest.raises(Exception, match="no event there"):  # refused inside the transaction
        await log.write_checkpoint(99, write({"j-2": b"two"}, deleted=("j-1",)))
    stored = await log.read_checkpoint()
    assert (stored.pos, await stored_rows(log)) == (2, [("j-1", b"one")])


async def test_a_checkpoint_given_up_by_a_stop_rolls_back_between_batches_of_rows(log):
    """A stop gives up a full checkpoint (as long as the history) half-way: the rows written
    so far go with the transaction, and the last checkpoint stands whole."""
    await log.write_checkpoint(2, write({"j-1": b"one"}, full=True))
    looks = []

    def stopping_after_one_batch() -> bool:
        looks.append(None)
        return len(looks) > 1

    rows = {f"j-{n:05}": b"row" for n in range(3 * _ROWS_BETWEEN_CHECKS)}
    packed = write(rows, full=True)()
    abandoned = replace(packed, abandon=stopping_after_one_batch)
    with pytest.raises(CheckpointAbandoned):
        await log.write_checkpoint(3, lambda: abandoned)
    assert len(looks) == 2  # one batch went in, then it stopped: not every row first
    stored = await log.read_checkpoint()
    assert (stored.pos, await stored_rows(log)) == (2, [("j-1", b"one")])


def test_packing_stops_as_soon_as_a_stop_asks():
    from edgebac.scheduler.checkpoint import ABANDON_EVERY, Snapshot, pack

    deleted = {f"j-{n}": None for n in range(3 * ABANDON_EVERY)}
    snapshot = Snapshot(core={}, changes=deleted, full=False, hash_parts=None)  # type: ignore[arg-type]
    looks = []
    with pytest.raises(CheckpointAbandoned):
        pack(snapshot, lambda: looks.append(None) or len(looks) > 1)
    assert len(looks) == 2


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("UPDATE checkpoint SET body = X'00'", "checksum"),
        ("DELETE FROM ended_jobs WHERE job_id = 'j-2'", "ended-job rows"),
        (
            "INSERT INTO ended_jobs SELECT 'j-3', 0, '', '', NULL, NULL, '', X'00', X'00'",
            "ended-job rows",
        ),
        ("UPDATE checkpoint SET event_id = X'00'", "not the one it was taken at"),
        ("UPDATE checkpoint SET pos = 99", "not the one it was taken at"),
    ],
)
async def test_a_checkpoint_changed_behind_the_writer_is_refused(log, sql, why):
    await log.write_checkpoint(3, write({"j-1": b"one", "j-2": b"two"}, full=True))
    edit(log, sql)
    with pytest.raises(BadCheckpoint, match=why):
        await log.read_checkpoint()


async def test_a_log_without_the_tables_gets_them_on_open(tmp_path):
    """A data dir written before checkpoints existed (same schema version) opens as it is."""
    log = await open_log(tmp_path / "old.db")
    await log.close()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        for table in ("checkpoint", "checkpoint_ended", "ended_jobs", "ended_executions"):
            conn.execute(f"DROP TABLE {table}")
    log = await open_log(tmp_path / "old.db")
    try:
        assert await log.read_checkpoint() is None
        await log.write_checkpoint(1, write({}, full=True))
        assert (await log.read_checkpoint()).pos == 1
    finally:
        await log.close()


async def test_the_digests_are_read_from_an_index_alone_and_keyset_pages_seek(log):
    """Start-up streams every ended job's digest (the state hash) and a deep page seeks to
    its cursor: both are index ranges, neither reads the wide rows nor walks an OFFSET."""
    await log.write_checkpoint(2, write({"j-1": b"one", "j-2": b"two"}, full=True))
    with sqlite3.connect(log.path) as conn:

        def plan(sql: str, *params) -> str:
            return " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

        assert "COVERING INDEX ended_jobs_digest" in plan(
            "SELECT job_id, digest FROM ended_jobs ORDER BY job_id"
        )
        seek = plan(
            "SELECT created, job_id FROM ended_jobs WHERE (1) AND job_id NOT IN (?)"
            " AND (created, job_id) < (?, ?) ORDER BY created DESC, job_id DESC LIMIT 5",
            "j-9",
            0,
            "j-2",
        )
        assert "ended_jobs_created ((created,job_id)<(?,?))" in seek, seek
    reader = log.ended_reader()
    try:
        everything = reader.keys(("1", ()), "id", False, 0, 10, set())
        after = reader.keys(("1", ()), "id", False, 0, 10, set(), ("j-1",))
        before = reader.keys(("1", ()), "id", True, 0, 10, {"j-0"}, ("j-2",))
    finally:
        reader.close()
    assert everything == (2, [("j-1",), ("j-2",)])
    assert after == (2, [("j-2",)])  # the total is the listing's, the keys those past it
    assert before == (2, [("j-1",)])
