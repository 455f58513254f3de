"""The tables a checkpoint of the projection lives in, beside the event log, and their SQL.

A checkpoint is not part of the log: `EventLog.write_checkpoint` replaces it freely (one
transaction on the writer's thread) and `EventLog.read_checkpoint` checks it before anyone
trusts it. What its body means is `scheduler.checkpoint`'s; here it is bytes.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgebac.errors import LogStoreError

# The projection saved at a position of this log (see `scheduler.checkpoint`), so a node starts
# from it and folds only what follows. Not part of the log: created on any open (an older
# edgebac ignores these tables, and folding the events it appended after `pos` is still right),
# rewritten freely, and checked before it is trusted (`read_checkpoint`).
CHECKPOINT_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- the newest only
    pos INTEGER NOT NULL,           -- the state folds events 1..pos (local arrival order)
    event_id BLOB NOT NULL,         -- of the event at pos: a checkpoint of another log is refused
    format TEXT NOT NULL,           -- of the body: the code that reads it must know it
    state_hash TEXT NOT NULL,       -- of the state: the loaded one must give it again
    body BLOB NOT NULL,
    checksum BLOB NOT NULL,         -- sha256 of body
    ended_rows INTEGER NOT NULL,    -- how many checkpoint_ended rows belong to it
    ended_sum BLOB NOT NULL,        -- their digests' sum mod 2^256 (rows are rewritten apart)
    written_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint_ended (
    job_id TEXT PRIMARY KEY,
    digest BLOB NOT NULL,           -- sha256 of job id and row
    row BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class CheckpointWrite:
    """A checkpoint to store: `rows` replace the ended rows of those job ids and `deleted`
    rows go (with `full`, the rows replace every stored one)."""

    format: str
    state_hash: str
    body: bytes
    rows: list[tuple[str, bytes]]
    deleted: list[str]
    full: bool


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The stored checkpoint, its body, rows and position checked (`read_checkpoint`)."""

    pos: int
    format: str
    state_hash: str
    body: bytes
    rows: list[tuple[str, bytes]]


class BadCheckpoint(LogStoreError):
    """The stored checkpoint is not what was written, or not of this log."""


_SUM_MOD = 1 << 256
_CHUNK = 500  # ids per IN (...) list


def _row_digest(job_id: str, row: bytes) -> int:
    packed = len(job_id).to_bytes(2, "big") + job_id.encode() + row
    return int.from_bytes(hashlib.sha256(packed).digest(), "big")


def write_checkpoint(
    conn: sqlite3.Connection, pos: int, written_ms: int, prepare: Callable[[], CheckpointWrite]
) -> None:
    """One checkpoint's transaction; `prepare` (the packing) runs here too, off the loop."""
    data = prepare()
    conn.execute("BEGIN IMMEDIATE")
    try:
        event_id = conn.execute("SELECT id FROM events WHERE pos = ?", (pos,)).fetchone()
        if event_id is None:
            raise LogStoreError(f"checkpoint at position {pos}: no event there")
        held = conn.execute("SELECT ended_rows, ended_sum FROM checkpoint").fetchone()
        if data.full:
            conn.execute("DELETE FROM checkpoint_ended")
            count, total = 0, 0
        elif held is None:
            raise LogStoreError("an incremental checkpoint with no checkpoint to build on")
        else:
            count, total = held[0], int.from_bytes(held[1], "big")
        gone = [*data.deleted, *(job_id for job_id, _ in data.rows)]
        for at in range(0, len(gone), _CHUNK):
            chunk = gone[at : at + _CHUNK]
            marks = ",".join("?" * len(chunk))
            where = f"FROM checkpoint_ended WHERE job_id IN ({marks})"
            for (digest,) in conn.execute(f"SELECT digest {where}", chunk):
                count, total = count - 1, total - int.from_bytes(digest, "big")
            conn.execute(f"DELETE {where}", chunk)
        new = [(job_id, _row_digest(job_id, row), row) for job_id, row in data.rows]
        conn.executemany(
            "INSERT INTO checkpoint_ended (job_id, digest, row) VALUES (?, ?, ?)",
            [(job_id, digest.to_bytes(32, "big"), row) for job_id, digest, row in new],
        )
        count += len(new)
        total = (total + sum(digest for _, digest, _ in new)) % _SUM_MOD
        conn.execute(
            "INSERT OR REPLACE INTO checkpoint (id, pos, event_id, format, state_hash, body,"
            " checksum, ended_rows, ended_sum, written_ms) VALUES (1,?,?,?,?,?,?,?,?,?)",
            (
                pos,
                event_id[0],
                data.format,
                data.state_hash,
                data.body,
                hashlib.sha256(data.body).digest(),
                count,
                total.to_bytes(32, "big"),
                written_ms,
            ),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def check_checkpoint(
    header: tuple[Any, ...], rows: list[tuple[str, bytes]], event_id: bytes | None
) -> None:
    """Raise BadCheckpoint unless the stored body, rows and position are what was written."""
    pos, held_id, _, _, body, checksum, count, total = header
    if event_id != held_id:
        raise BadCheckpoint(f"the event at position {pos} is not the one it was taken at")
    if hashlib.sha256(body).digest() != checksum:
        raise BadCheckpoint("its body does not match its checksum")
    got = sum(_row_digest(job_id, row) for job_id, row in rows) % _SUM_MOD
    if len(rows) != count or got.to_bytes(32, "big") != total:
        raise BadCheckpoint(f"its {len(rows)} ended-job rows are not the {count} it wrote")
