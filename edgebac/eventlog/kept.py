"""The SQL behind late joining (`eventlog.adopt`): the kept events below a pruned log's
horizon, as a peer serves them, and a joiner's first write of them with the horizon."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from edgebac.eventlog.horizon import Horizon
from edgebac.eventlog.prune import read_horizon

Cursor = tuple[bytes, int]  # (author, seq): the last kept event given


def _kept_rows(
    conn: sqlite3.Connection, horizon: Horizon, after: Cursor | None, columns: str
) -> Iterator[tuple[Any, ...]]:
    """Rows of the kept events below the horizon's heads, in (author, seq) order, after
    `after`; each row is (author, seq, *columns)."""
    for author in sorted(horizon.heads):
        if after is not None and author < after[0]:
            continue
        start = after[1] if after is not None and author == after[0] else 0
        yield from conn.execute(
            f"SELECT author, seq, {columns} FROM events WHERE author = ? AND seq > ? AND seq < ?"
            " ORDER BY seq",
            (author, start, horizon.heads[author].seq),
        )


def kept_ids(conn: sqlite3.Connection, horizon: Horizon) -> list[tuple[Any, ...]]:
    """The (author, seq, id) of every kept event below the horizon's heads."""
    return [tuple(row) for row in _kept_rows(conn, horizon, None, "id")]


def kept_page(
    conn: sqlite3.Connection, signer: bytes, after: Cursor | None, max_events: int, max_bytes: int
) -> tuple[list[bytes], Cursor | None]:
    """(raw kept events after `after`, the cursor to ask on from; None when none are left)."""
    horizon = read_horizon(conn, signer)
    if horizon is None:
        return [], None
    raws: list[bytes] = []
    size = 0
    for author, seq, raw in _kept_rows(conn, horizon, after, "raw"):
        if raws and (len(raws) >= max_events or size + len(raw) > max_bytes):
            return raws, after
        raws.append(raw)
        size += len(raw)
        after = (author, seq)
    return raws, None


def write_adopted(
    conn: sqlite3.Connection,
    insert: str,
    rows: Sequence[tuple[Any, ...]],
    horizon_row: tuple[bytes, bytes, bytes, int],
) -> None:
    """In one transaction: the kept events (`rows` for the log's `insert` statement) and the
    horizon row (body, signature, signer, written_ms), into a log that holds neither yet."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None:
            raise sqlite3.IntegrityError("the log is not empty: a horizon is adopted only first")
        if conn.execute("SELECT 1 FROM horizon").fetchone() is not None:
            raise sqlite3.IntegrityError("the log has a horizon already")
        conn.executemany(insert, rows)
        conn.execute(
            "INSERT INTO horizon (id, body, signature, signer, written_ms) VALUES (1, ?, ?, ?, ?)",
            horizon_row,
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
