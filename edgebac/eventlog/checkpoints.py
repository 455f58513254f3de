"""The tables a checkpoint of the projection lives in, beside the event log, and their SQL.

A checkpoint is not part of the log: `EventLog.write_checkpoint` replaces it freely (one
transaction on the writer's thread) and `EventLog.read_checkpoint` checks it before anyone
trusts it; `EndedReader` reads its ended-job rows, by index. What its body and rows mean is
`scheduler.checkpoint`'s; here they are bytes.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebac.errors import LogStoreError
from edgebac.eventlog.prune import Prune, prune
from edgebac.eventlog.vacuum import after_commit

# The projection saved at a position of this log (see `scheduler.checkpoint`), so a node starts
# from it and folds only what follows. Not part of the log: created on any open (an older
# edgebac ignores these tables, and folding the events it appended after `pos` is still right),
# rewritten freely, and checked before it is trusted (`read_checkpoint`). The ended jobs let go
# of are rows of their own, indexed for what the node looks up and lists (read through
# `EndedReader`, a read-only connection: the log's one writer writes them, in the checkpoint's
# transaction). `checkpoint_ended` is what format 2 wrote: emptied by the first checkpoint.
CHECKPOINT_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- the newest only
    pos INTEGER NOT NULL,           -- the state folds events 1..pos (local arrival order)
    event_id BLOB NOT NULL,         -- of the event at pos: a checkpoint of another log is refused
    format TEXT NOT NULL,           -- of the body: the code that reads it must know it
    state_hash TEXT NOT NULL,       -- of the state: the loaded one must give it again
    body BLOB NOT NULL,
    checksum BLOB NOT NULL,         -- sha256 of body
    ended_rows INTEGER NOT NULL,    -- how many ended_jobs rows belong to it
    ended_sum BLOB NOT NULL,        -- unused since format 3 (the state hash covers the digests)
    written_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint_ended (
    job_id TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    row BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ended_jobs (
    job_id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,       -- its hlc, packed, minus 2^63 (SQLite's are signed)
    status TEXT NOT NULL,
    requester BLOB NOT NULL,
    client BLOB,                    -- who signed it (a caller of scope own sees its own)
    vouched TEXT,                   -- or whom the requester vouched for
    name TEXT NOT NULL,
    digest BLOB NOT NULL,           -- its part of the state hash
    row BLOB NOT NULL               -- the summary, msgpack
);
CREATE INDEX IF NOT EXISTS ended_jobs_created ON ended_jobs (created, job_id);
CREATE INDEX IF NOT EXISTS ended_jobs_client ON ended_jobs (client, created, job_id);
CREATE INDEX IF NOT EXISTS ended_jobs_vouched ON ended_jobs (vouched, created, job_id);
CREATE INDEX IF NOT EXISTS ended_jobs_name ON ended_jobs (name);
-- The digests in id order, read from the index alone (the state hash streams them at every
-- start and checkpoint: through the primary key's index, each is a lookup of its wide row).
CREATE INDEX IF NOT EXISTS ended_jobs_digest ON ended_jobs (job_id, digest);
CREATE TABLE IF NOT EXISTS ended_executions (
    execution_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    node BLOB NOT NULL,
    status TEXT NOT NULL,
    reference TEXT,                 -- where its result is: the holders index
    digest TEXT,
    ended_ms INTEGER,
    row BLOB NOT NULL               -- the execution, msgpack
);
CREATE INDEX IF NOT EXISTS ended_executions_job ON ended_executions (job_id);
CREATE INDEX IF NOT EXISTS ended_executions_reference ON ended_executions (reference);
CREATE INDEX IF NOT EXISTS ended_executions_digest ON ended_executions (digest);
CREATE INDEX IF NOT EXISTS ended_executions_ended ON ended_executions (ended_ms);
"""

JOB_COLUMNS = "job_id, created, status, requester, client, vouched, name, digest, row"
EXECUTION_COLUMNS = "execution_id, job_id, node, status, reference, digest, ended_ms, row"


@dataclass(frozen=True, slots=True)
class CheckpointWrite:
    """A checkpoint to store: `jobs` and `executions` rows (columns as `JOB_COLUMNS` and
    `EXECUTION_COLUMNS`) replace those of the job ids in `deleted`, whose rows go (with
    `full`, they replace every stored one). `state_hash` hashes the state from the ended
    jobs' (id, digest) in id order, and how many there are, once the rows are in."""

    format: str
    body: bytes
    jobs: list[tuple[Any, ...]]
    executions: list[tuple[Any, ...]]
    deleted: list[str]
    full: bool
    state_hash: Callable[[Iterator[tuple[str, bytes]], int], str]
    abandon: Callable[[], bool] = lambda: False  # True: stop (the node is stopping), roll back
    prune: Prune | None = None  # events of the jobs it forgot, to remove in its transaction


class CheckpointAbandoned(Exception):
    """A checkpoint given up half-way, rolled back: the node is stopping, and this one (a full
    one, as long as the history) would hold the stop up."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The stored checkpoint, its body, row count and position checked (`read_checkpoint`);
    its rows are read through an `EndedReader`."""

    pos: int
    format: str
    state_hash: str
    body: bytes
    ended_rows: int


class BadCheckpoint(LogStoreError):
    """The stored checkpoint is not what was written, or not of this log."""


_CHUNK = 500  # ids per IN (...) list
_ROWS_BETWEEN_CHECKS = 8192  # rows written between two looks at `abandon`


def _digests(conn: sqlite3.Connection) -> Iterator[tuple[str, bytes]]:
    return iter(conn.execute("SELECT job_id, digest FROM ended_jobs ORDER BY job_id"))


def write_checkpoint(
    conn: sqlite3.Connection, pos: int, written_ms: int, prepare: Callable[[], CheckpointWrite]
) -> str:
    """One checkpoint's transaction; `prepare` (the packing) and the state hash (streamed
    from the rows just written) run here too, off the loop. Returns the state hash."""
    data = prepare()
    conn.execute("BEGIN IMMEDIATE")
    try:
        event_id = conn.execute("SELECT id FROM events WHERE pos = ?", (pos,)).fetchone()
        if event_id is None:
            raise LogStoreError(f"checkpoint at position {pos}: no event there")
        held = conn.execute("SELECT 1 FROM checkpoint").fetchone()
        if data.full:
            for table in ("ended_jobs", "ended_executions", "checkpoint_ended"):
                conn.execute(f"DELETE FROM {table}")
        elif held is None:
            raise LogStoreError("an incremental checkpoint with no checkpoint to build on")
        for at in range(0, len(data.deleted), _CHUNK):
            chunk = data.deleted[at : at + _CHUNK]
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM ended_jobs WHERE job_id IN ({marks})", chunk)
            conn.execute(f"DELETE FROM ended_executions WHERE job_id IN ({marks})", chunk)
        for at in range(0, max(len(data.jobs), len(data.executions)), _ROWS_BETWEEN_CHECKS):
            if data.abandon():
                raise CheckpointAbandoned("the node is stopping")
            conn.executemany(
                f"INSERT INTO ended_jobs ({JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                data.jobs[at : at + _ROWS_BETWEEN_CHECKS],
            )
            conn.executemany(
                f"INSERT INTO ended_executions ({EXECUTION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                data.executions[at : at + _ROWS_BETWEEN_CHECKS],
            )
        if data.prune is not None:
            prune(conn, pos, data.prune, written_ms)
        count = conn.execute("SELECT COUNT(*) FROM ended_jobs").fetchone()[0]
        state_hash = data.state_hash(_digests(conn), count)
        conn.execute(
            "INSERT OR REPLACE INTO checkpoint (id, pos, event_id, format, state_hash, body,"
            " checksum, ended_rows, ended_sum, written_ms) VALUES (1,?,?,?,?,?,?,?,?,?)",
            (
                pos,
                event_id[0],
                data.format,
                state_hash,
                data.body,
                hashlib.sha256(data.body).digest(),
                count,
                b"",
                written_ms,
            ),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    after_commit(conn, data.prune is not None)  # gives disk space back (eventlog.vacuum)
    return state_hash


def check_checkpoint(header: tuple[Any, ...], rows: int, event_id: bytes | None) -> None:
    """Raise BadCheckpoint unless the stored body, row count and position are what was
    written (the rows' digests are checked by the state hash they must give)."""
    pos, held_id, _, _, body, checksum, count = header
    if event_id != held_id:
        raise BadCheckpoint(f"the event at position {pos} is not the one it was taken at")
    if hashlib.sha256(body).digest() != checksum:
        raise BadCheckpoint("its body does not match its checksum")
    if rows != count:
        raise BadCheckpoint(f"its {rows} ended-job rows are not the {count} it wrote")


class EndedReader:
    """Read-only SQL over the ended-job rows (WAL: beside the one writer). Point reads and
    index ranges only, on the loop's thread (each is microseconds) or, at start, on one
    other thread at a time. Rows are bytes here: what they mean is `scheduler.checkpoint`'s."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA query_only = ON")
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._counts: dict[tuple[Any, ...], int] = {}  # per owner, for one checkpoint

    def close(self) -> None:
        self._conn.close()

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._conn.execute(sql, params).fetchone()

    def job_row(self, job_id: str) -> bytes | None:
        row = self._one("SELECT row FROM ended_jobs WHERE job_id = ?", (job_id,))
        return row[0] if row else None

    def has(self, job_id: str) -> bool:
        return self._one("SELECT 1 FROM ended_jobs WHERE job_id = ?", (job_id,)) is not None

    def job_rows(self, ids: list[str]) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        for at in range(0, len(ids), _CHUNK):
            chunk = ids[at : at + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT job_id, row FROM ended_jobs WHERE job_id IN ({marks})"
            out += self._conn.execute(sql, chunk).fetchall()
        return out

    def execution_rows_of(self, job_id: str) -> list[bytes]:
        sql = "SELECT row FROM ended_executions WHERE job_id = ? ORDER BY rowid"
        return [r for (r,) in self._conn.execute(sql, (job_id,))]

    def execution_row(self, execution_id: str) -> bytes | None:
        row = self._one("SELECT row FROM ended_executions WHERE execution_id = ?", (execution_id,))
        return row[0] if row else None

    def holding_rows(self, cid: str) -> list[bytes]:
        sql = "SELECT row FROM ended_executions WHERE reference = ? OR digest = ?"  # 2 indexes
        return [r for (r,) in self._conn.execute(sql, (cid, cid))]

    def rows_since(self, ms: int) -> list[bytes]:
        sql = "SELECT row FROM ended_executions WHERE ended_ms IS NULL OR ended_ms >= ?"
        return [r for (r,) in self._conn.execute(sql, (ms,))]

    def ended_ms(self) -> dict[str, tuple[str, int | None]]:
        sql = "SELECT execution_id, job_id, ended_ms FROM ended_executions"
        return {i: (job_id, ms) for i, job_id, ms in self._conn.execute(sql)}

    def named_rows(self, name: str) -> list[bytes]:
        return [
            r for (r,) in self._conn.execute("SELECT row FROM ended_jobs WHERE name = ?", (name,))
        ]

    def ids_from(self, prefix: str, limit: int) -> list[str]:
        sql = "SELECT job_id FROM ended_jobs WHERE job_id >= ? ORDER BY job_id LIMIT ?"
        ids = [i for (i,) in self._conn.execute(sql, (prefix, limit))]
        return [i for i in ids if i.startswith(prefix)]

    def ids(self) -> Iterator[str]:
        return (i for (i,) in self._conn.execute("SELECT job_id FROM ended_jobs ORDER BY job_id"))

    def count(self) -> int:
        return self._one("SELECT COUNT(*) FROM ended_jobs", ())[0]

    def digests(self) -> Iterator[tuple[str, bytes]]:
        return _digests(self._conn)

    def keys(
        self,
        where: Owned,
        order: str,
        desc: bool,
        start: int,
        limit: int,
        exclude: set[str],
        after: tuple[Any, ...] | None = None,
    ) -> tuple[int, list[tuple[Any, ...]]]:
        """How many rows `where` matches (less `exclude`), and the sort keys of `limit` of
        them from `start` in (`order` "id" or "created", `desc`), in one read transaction;
        with `after` (a sort key: its columns' values), of those past it, sought by index
        (a row-value comparison on the index's columns: no OFFSET walked)."""
        cond, params = where
        columns = "job_id" if order == "id" else "created, job_id"
        way = " DESC" if desc else ""
        by = ", ".join(f"{c.strip()}{way}" for c in columns.split(","))
        seek, sought = "", ()
        if after is not None:
            marks = ",".join("?" * len(after))
            seek, sought = f" AND ({columns}) {'<' if desc else '>'} ({marks})", tuple(after)
        skip = sorted(exclude)
        self._conn.execute("BEGIN")
        try:
            header = self._one("SELECT ended_rows, pos, state_hash FROM checkpoint", ())
            total = self._count(cond, params, header)
            for at in range(0, len(skip), _CHUNK):
                chunk = skip[at : at + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT COUNT(*) FROM ended_jobs WHERE ({cond}) AND job_id IN ({marks})"
                total -= self._one(sql, (*params, *chunk))[0]
            marks = ",".join("?" * len(skip))
            sql = (
                f"SELECT {columns} FROM ended_jobs WHERE ({cond}) AND job_id NOT IN ({marks})"
                f"{seek} ORDER BY {by} LIMIT ? OFFSET ?"
            )
            keys = self._conn.execute(sql, (*params, *skip, *sought, limit, start)).fetchall()
        finally:
            self._conn.execute("COMMIT")
        return total, keys

    def _count(self, cond: str, params: tuple[Any, ...], header: Any) -> int:
        """Rows matching: the checkpoint says how many in all; per owner, counted once for
        each checkpoint (an index range: the same rows until the next one)."""
        if header is None:
            return 0
        if cond == ALL[0]:
            return header[0]
        key = (header[1:], cond, *params)  # the same position and state: the same rows
        if key not in self._counts:
            self._counts = {k: v for k, v in self._counts.items() if k[0] == header[1:]}
            sql = f"SELECT COUNT(*) FROM ended_jobs WHERE {cond}"
            self._counts[key] = self._one(sql, params)[0]
        return self._counts[key]


Owned = tuple[str, tuple[Any, ...]]  # an SQL condition on ended_jobs and its parameters
ALL: Owned = ("1", ())


def owned_by(everyone: bool, client: bytes | None, vouched: str | None) -> Owned:
    """The rows a caller may list: all, or its own (signed by it, or vouched for as it)."""
    if everyone:
        return ALL
    parts, params = [], []
    if client is not None:
        parts.append("client = ?")
        params.append(client)
    if vouched is not None:
        parts.append("(client IS NULL AND vouched = ?)")
        params.append(vouched)
    return (" OR ".join(parts) or "0"), tuple(params)
