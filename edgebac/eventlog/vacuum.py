"""Giving back the disk space pruning frees: the log file's free pages and the WAL.

SQLite keeps a deleted row's pages as free pages of the file and reuses them; the file never
shrinks by itself. With `auto_vacuum = INCREMENTAL` (a property of the file, set before its
first table or by one VACUUM) `PRAGMA incremental_vacuum` moves pages from the file's end
into the free ones and truncates it: the cost is the pages moved, not the file. A pruning
transaction also writes every page it changes to the WAL, which SQLite rewinds but does not
shrink: a checkpoint in TRUNCATE mode empties the file.

`reclaim` runs on the log's writer connection right after a checkpoint's transaction
commits (`checkpoints.write_checkpoint`, through `after_commit`), outside any transaction. A
file written without auto-vacuum is converted there, at the first prune that leaves its live
data small enough for the writer to be busy a moment only (`CONVERT_LIVE_BYTES`: VACUUM
rewrites every live page, whatever the free ones), or by `vacuum_file` on the stopped node.
Both are crash-safe as SQLite makes them: a VACUUM or an incremental vacuum cut short rolls
back. The WAL is emptied after every checkpoint, so a clean stop (which writes one) leaves it
empty, whichever connection closes last.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)
INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
# A VACUUM of 40 MB of live log took 0.7 s here: 16 MB keeps the writer (so appends) busy
# about a second on a Pi-class CPU. A larger log converts at a later prune, once pruning
# leaves it under this, or by `vacuum_file`.
CONVERT_LIVE_BYTES = 16 << 20
# Free pages worth giving back outside a prune (checkpoints rewrite rows and free pages too).
FREE_SHARE = 0.25
FREE_MIN_PAGES = 256
# How long the truncating checkpoint waits for readers to leave the WAL: it runs on the
# writer's thread, so appends wait with it. A busy WAL is truncated at the next chance.
TRUNCATE_WAIT_MS = 250


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What `reclaim` did: pages freed from the file, whether it converted the file, and
    the WAL's size after."""

    pages: int
    converted: bool
    wal_bytes: int


def _one(conn: sqlite3.Connection, pragma: str) -> int:
    return int(conn.execute(f"PRAGMA {pragma}").fetchone()[0])


def _wal_bytes(conn: sqlite3.Connection) -> int:
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    try:
        return os.path.getsize(f"{path}-wal") if path else 0
    except OSError:
        return 0


def after_commit(conn: sqlite3.Connection, pruned: bool) -> Reclaimed | None:
    """`reclaim`, after a checkpoint committed: a failure only leaves space unreclaimed (the
    next checkpoint tries again), so it is logged, not raised."""
    try:
        return reclaim(conn, pruned)
    except sqlite3.Error as exc:
        logger.warning("giving back the log's free space failed: %s", exc)
        return None


def reclaim(
    conn: sqlite3.Connection, pruned: bool, convert_live_bytes: int = CONVERT_LIVE_BYTES
) -> Reclaimed:
    """After a commit on the writer: give back free pages (converting a small file to
    incremental auto-vacuum on its first prune), then empty the WAL: after every checkpoint,
    so a clean stop (which writes one) leaves it empty too."""
    before = _one(conn, "page_count")
    free = _one(conn, "freelist_count")
    converted = False
    if _one(conn, "auto_vacuum") != INCREMENTAL:
        live = (before - free) * _one(conn, "page_size")
        if pruned and live <= convert_live_bytes:
            conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
            conn.execute("VACUUM")  # the one-time conversion; it gives the free pages back too
            converted = True
    elif free and (pruned or free >= max(FREE_MIN_PAGES, before * FREE_SHARE)):
        # executescript steps the pragma to its end (execute() frees one page a step)
        conn.executescript("PRAGMA incremental_vacuum;")
    pages = before - _one(conn, "page_count")
    truncate_wal(conn)
    return Reclaimed(pages, converted, _wal_bytes(conn))


def truncate_wal(conn: sqlite3.Connection, wait_ms: int = TRUNCATE_WAIT_MS) -> bool:
    """Checkpoint the WAL into the file and cut it to nothing, waiting at most `wait_ms`
    for readers; True if it was emptied."""
    kept = _one(conn, "busy_timeout")
    conn.execute(f"PRAGMA busy_timeout = {wait_ms}")
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {kept}")
    return busy == 0


def vacuum_file(path: Path) -> tuple[int, int]:
    """`edgebac node gc --vacuum`: convert a stopped node's log to incremental auto-vacuum
    and rewrite it without free pages (its lock held by the caller). Sizes before and after
    (the file and its WAL)."""
    before = _size(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
        conn.execute("VACUUM")
        truncate_wal(conn, 5000)
    finally:
        conn.close()
    return before, _size(path)


def _size(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))
