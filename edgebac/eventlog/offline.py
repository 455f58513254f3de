"""Offline access to a data directory's event log, for `edgebac log verify/show`.

Read-only, plain sqlite3 (no node is needed, and one may be running: WAL lets both read).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgebac.errors import LogStoreError
from edgebac.eventlog.horizon import Horizon, HorizonError
from edgebac.eventlog.prune import read_horizon
from edgebac.eventlog.store import check_identity, not_ours


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row exactly as stored, so a checker can compare the columns with the signed bytes."""

    author: bytes
    seq: int
    pos: int
    id: bytes
    hlc: int
    type: str
    job_id: str | None
    raw: bytes


def _connect_readonly(path: Path, flags: str) -> tuple[sqlite3.Connection, int, int, bool]:
    conn = sqlite3.connect(f"file:{path}?{flags}", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_tables = bool(conn.execute("SELECT name FROM sqlite_master").fetchall())
    except BaseException:
        conn.close()
        raise
    return conn, app_id, version, has_tables


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to a log a running node may be writing (WAL allows both)."""
    if not path.is_file():
        raise LogStoreError(f"{path}: no event log here")
    try:
        try:
            conn, app_id, version, has_tables = _connect_readonly(path, "mode=ro")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_CANTOPEN or os.access(path.parent, os.W_OK):
                raise
            # A WAL database in a directory we cannot write (a read-only mount, a backup):
            # SQLite cannot create its shared-memory file, and no node can be writing there.
            conn, app_id, version, has_tables = _connect_readonly(path, "mode=ro&immutable=1")
    except sqlite3.DatabaseError as exc:
        raise not_ours(path, str(exc)) from None
    if check_identity(path, app_id, version, has_tables):
        conn.close()
        raise not_ours(path, "it holds no edgebac schema")
    return conn


def stored_rows(conn: sqlite3.Connection) -> Iterator[StoredRow]:
    cursor = conn.execute(
        "SELECT author, seq, pos, id, hlc, type, job_id, raw FROM events ORDER BY author, seq"
    )
    for row in cursor:
        yield StoredRow(*row)


def stored_by_pos(
    conn: sqlite3.Connection, type_: str | None = None, job_id: str | None = None
) -> Iterator[tuple[int, bytes]]:
    where, params = [], []
    if type_ is not None:
        where.append("type = ?")
        params.append(type_)
    if job_id is not None:
        where.append("job_id = ?")
        params.append(job_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    yield from conn.execute(f"SELECT pos, raw FROM events {clause} ORDER BY pos", params)


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    return [] if rows == [("ok",)] else [row[0] for row in rows]


def fork_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM forks").fetchone()[0]


def stored_horizon(conn: sqlite3.Connection) -> Horizon | None:
    """What pruning removed from this log (None: nothing), if the key it names signed it and
    that key wrote events here; HorizonError if not."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'horizon'").fetchone():
        return None  # a file no edgebac that prunes has opened yet
    horizon = read_horizon(conn, None)
    if horizon is None:
        return None
    (signer,) = conn.execute("SELECT CAST(signer AS BLOB) FROM horizon").fetchone()
    if conn.execute("SELECT 1 FROM events WHERE author = ? LIMIT 1", (signer,)).fetchone() is None:
        raise HorizonError("it is signed by a key that wrote no event in this log")
    return horizon
