"""Giving pruned space back (eventlog.vacuum) on real SQLite files in WAL mode, as the log's
writer holds them: conversion at the first prune only when the live data is small, the free
pages given back after, the WAL emptied unless a reader holds it (then not waiting long)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from edgebac.eventlog.vacuum import INCREMENTAL, reclaim, truncate_wal, vacuum_file


def filled(path: Path, rows: int = 4000) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("CREATE TABLE events (pos INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (raw) VALUES (?)", [(os.urandom(600),) for _ in range(rows)]
    )
    conn.execute("COMMIT")
    return conn


def prune(conn: sqlite3.Connection, keep_every: int) -> None:
    conn.execute("DELETE FROM events WHERE pos % ? != 0", (keep_every,))


def sizes(path: Path) -> tuple[int, int]:
    wal = Path(f"{path}-wal")
    return path.stat().st_size, wal.stat().st_size if wal.exists() else 0


def test_a_small_file_is_converted_at_its_first_prune_and_shrinks_after_each(tmp_path):
    path = tmp_path / "events.db"
    conn = filled(path)
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    done = reclaim(conn, pruned=False)  # a checkpoint without a prune converts nothing
    assert not done.converted
    full, wal = sizes(path)
    assert wal == 0  # but empties the WAL
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    prune(conn, 10)
    assert sizes(path)[1] > full / 2  # the prune's pages in the WAL
    done = reclaim(conn, pruned=True)
    assert done.converted
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL
    file, wal = sizes(path)
    assert file < full / 5
    assert wal == 0
    assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 400  # readers unharmed
    prune(conn, 40)
    done = reclaim(conn, pruned=True)  # incremental from now on: no VACUUM
    assert not done.converted
    assert done.pages > 0
    assert sizes(path)[0] < file / 2
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_a_large_file_is_left_to_an_offline_vacuum(tmp_path):
    path = tmp_path / "events.db"
    conn = filled(path)
    assert truncate_wal(conn)
    full, _ = sizes(path)
    prune(conn, 10)
    done = reclaim(conn, pruned=True, convert_live_bytes=1024)  # "too big" to convert online
    assert not done.converted
    assert done.wal_bytes == 0  # its WAL is emptied all the same
    assert sizes(path)[0] == full  # the free pages stay (SQLite reuses them)
    conn.close()
    before, after = vacuum_file(path)  # `edgebac node gc --vacuum`, the node stopped
    assert after < before / 5
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 400
    conn.close()


def test_a_reader_holding_the_wal_delays_the_truncation_only_briefly(tmp_path):
    path = tmp_path / "events.db"
    conn = filled(path, 200)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM events").fetchone()  # a snapshot in the WAL
    conn.execute("INSERT INTO events (raw) VALUES (x'00')")
    began = time.monotonic()
    assert not truncate_wal(conn, 100)
    assert time.monotonic() - began < 1.0  # not the writer's busy timeout of 5 s
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000  # given back
    reader.execute("COMMIT")
    assert truncate_wal(conn)
    assert sizes(path)[1] == 0
