"""The one path that removes events from the log: pruning, in a checkpoint's transaction.

The database refuses DELETE on events by itself (a trigger) unless the event's job is named in
`prune_permit` for positions below the checkpoint's: `prune` fills it, deletes, and empties it
again, inside the checkpoint's transaction, so what is pruned and the projection that forgot
it are committed together or not at all. The event at the checkpoint's own position stays
(the checkpoint names it). The horizon (`eventlog.horizon`), extended by what went and signed
by the node, is written in the same transaction; an archive, when asked for, is written and
synced before the deletion commits (an archive may so hold an event twice, never miss one).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebac.errors import LogStoreError
from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.horizon import Horizon, HorizonError, Pruned, extend, opened, pack

# Run on every open (after the log's own schema): an older file's trigger refused every
# DELETE; this one lets the pruning path through and nothing else.
PRUNE_SCHEMA = """
CREATE TABLE IF NOT EXISTS horizon (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- cumulative: one row
    body BLOB NOT NULL,             -- eventlog.horizon.pack
    signature BLOB NOT NULL,        -- by signer, over HORIZON_CONTEXT + body
    signer BLOB NOT NULL,           -- the node's public key
    written_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS prune_permit (
    job_id TEXT PRIMARY KEY,
    below_pos INTEGER NOT NULL
);
DROP TRIGGER IF EXISTS events_no_delete;
CREATE TRIGGER IF NOT EXISTS events_delete_only_pruned BEFORE DELETE ON events
WHEN NOT EXISTS (
    SELECT 1 FROM prune_permit WHERE job_id = OLD.job_id AND OLD.pos < below_pos
)
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: DELETE refused (but pruning)'); END;
"""

ARCHIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    id BLOB NOT NULL,
    hlc INTEGER NOT NULL,
    type TEXT NOT NULL,
    job_id TEXT,
    raw BLOB NOT NULL,
    PRIMARY KEY (author, seq)
);
"""
ARCHIVE_COLUMNS = "author, seq, id, hlc, type, job_id, raw"
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Prune:
    """Remove the events of `job_ids` (jobs the projection has just forgotten) below the
    checkpoint's position; `reputation` is what those jobs added to each node."""

    job_ids: list[str]
    cut: Hlc
    reputation: Mapping[bytes, tuple[int, int]]
    signer: bytes
    sign: Callable[[bytes], bytes]
    archive: Path | None = None


def read_horizon(conn: sqlite3.Connection, signer: bytes | None) -> Horizon | None:
    """The stored horizon, checked against `signer` (None: against the key it names, for
    tools that read a log without its node's key); HorizonError if it does not check out."""
    row = conn.execute(  # as bytes whatever an edit made of them
        "SELECT CAST(body AS BLOB), CAST(signature AS BLOB), CAST(signer AS BLOB) FROM horizon"
    ).fetchone()
    if row is None:
        return None
    body, signature, stored_signer = row
    if signer is not None and stored_signer != signer:
        raise HorizonError("it was signed by another node's key")
    return opened(body, signature, stored_signer)


HLC_SHIFT = 1 << 63  # ended_jobs.created is the packed hlc minus this (SQLite's are signed)


def prunable_jobs(conn: sqlite3.Connection, cut: int, limit: int) -> list[str]:
    """Up to `limit` jobs with an ended row, created before `cut` (a packed hlc) and every
    event of which is older than it, oldest first."""
    created = conn.execute(
        "SELECT job_id FROM ended_jobs WHERE created < ? ORDER BY created LIMIT ?",
        (cut - HLC_SHIFT, limit),
    ).fetchall()
    ids = [job_id for (job_id,) in created]
    newest: dict[str, int] = {}
    for marks, chunk in _in_chunks(ids):
        newest.update(
            conn.execute(
                f"SELECT job_id, MAX(hlc) FROM events WHERE job_id IN ({marks}) GROUP BY job_id",
                chunk,
            ).fetchall()
        )
    return [job_id for job_id in ids if newest.get(job_id, cut) < cut]


def _in_chunks(ids: list[str]) -> Iterable[tuple[str, list[str]]]:
    for at in range(0, len(ids), _CHUNK):
        chunk = ids[at : at + _CHUNK]
        yield ",".join("?" * len(chunk)), chunk


def prune(conn: sqlite3.Connection, below_pos: int, order: Prune, written_ms: int) -> Horizon:
    """Inside an open transaction: delete, extend and write the horizon; returns it."""
    try:
        old = read_horizon(conn, order.signer)
    except HorizonError as exc:
        raise LogStoreError(f"the log's horizon cannot be extended: {exc}") from None
    conn.executemany(
        "INSERT OR REPLACE INTO prune_permit (job_id, below_pos) VALUES (?, ?)",
        [(job_id, below_pos) for job_id in order.job_ids],
    )
    rows: list[tuple[Any, ...]] = []
    for marks, chunk in _in_chunks(order.job_ids):
        rows += conn.execute(
            f"SELECT {ARCHIVE_COLUMNS} FROM events WHERE job_id IN ({marks}) AND pos < ?",
            (*chunk, below_pos),
        ).fetchall()
    if order.archive is not None and rows:
        write_archive(order.archive, rows)
    for marks, chunk in _in_chunks(order.job_ids):
        conn.execute(
            f"DELETE FROM events WHERE job_id IN ({marks}) AND pos < ?", (*chunk, below_pos)
        )
    conn.execute("DELETE FROM prune_permit")
    went = tuple((author, seq, event_id, hlc) for author, seq, event_id, hlc, *_ in rows)
    horizon = extend(old, order.cut, Pruned(went, len(order.job_ids), order.reputation))
    body = pack(horizon)
    conn.execute(
        "INSERT OR REPLACE INTO horizon (id, body, signature, signer, written_ms)"
        " VALUES (1, ?, ?, ?, ?)",
        (body, order.sign(body), order.signer, written_ms),
    )
    return horizon


def write_archive(path: Path, rows: Iterable[tuple[Any, ...]]) -> int:
    """Add `rows` (columns `ARCHIVE_COLUMNS`; streamed) to the SQLite archive at `path`, on
    disk before this returns; how many were given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    archive = sqlite3.connect(path, isolation_level=None)
    counted = 0

    def counting() -> Iterator[tuple[Any, ...]]:
        nonlocal counted
        for row in rows:
            counted += 1
            yield row

    try:
        archive.execute("PRAGMA synchronous = FULL")
        archive.executescript(f"BEGIN; {ARCHIVE_SCHEMA} COMMIT;")
        archive.execute("BEGIN IMMEDIATE")
        archive.executemany(
            f"INSERT OR IGNORE INTO events ({ARCHIVE_COLUMNS}) VALUES (?,?,?,?,?,?,?)", counting()
        )
        archive.execute("COMMIT")
    finally:
        archive.close()
    return counted


def preview(conn: sqlite3.Connection, cut: Hlc) -> tuple[list[str], int, int]:
    """What a prune at `cut` would remove now: the jobs, how many events, how many bytes."""
    jobs = prunable_jobs(conn, cut.pack(), 1 << 62)
    events = size = 0
    for marks, chunk in _in_chunks(jobs):
        n, b = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM(LENGTH(raw)), 0) FROM events WHERE job_id IN ({marks})",
            chunk,
        ).fetchone()
        events, size = events + n, size + b
    return jobs, events, size


def export(conn: sqlite3.Connection, path: Path, job_ids: list[str] | None) -> int:
    """Write the events of `job_ids` (None: every event) to an archive at `path`; how many."""
    if job_ids is None:
        return write_archive(path, conn.execute(f"SELECT {ARCHIVE_COLUMNS} FROM events"))

    def rows() -> Iterator[tuple[Any, ...]]:
        for marks, chunk in _in_chunks(job_ids):
            yield from conn.execute(
                f"SELECT {ARCHIVE_COLUMNS} FROM events WHERE job_id IN ({marks})", chunk
            )

    return write_archive(path, rows())
