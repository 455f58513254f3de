"""A real node starts from its checkpoint, and refolds its log when the checkpoint was changed
behind its back, reaching the same state hash either way."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3

from biglog import write_history

from edgebac.eventlog.encoding import decode
from edgebac.scheduler.projection import Projection
from tests.procs import nodes_fixture

nodes = nodes_fixture()
JOBS = 500  # about 3,000 events
STARTED = re.compile(r"checkpoint: started from log position (\d+), folded (\d+) events after it")
REFUSED = re.compile(r"checkpoint refused \((.+)\): folding the whole log")


def state_hash(node) -> str:
    status, info = node.get_json("/api/v1/node?state_hash=1")
    assert status == 200, info
    return info["state_hash"]


def folded_whole(data_dir) -> str:
    """The state hash of a fold of the node's whole log, read from its file."""
    with sqlite3.connect(data_dir / "events.db") as conn:
        raws = [raw for (raw,) in conn.execute("SELECT raw FROM events ORDER BY pos")]
    return Projection.from_events(decode(raw) for raw in raws).state_hash()


def run_once(nodes, data_dir) -> tuple[str, str]:
    """Start the node, read its state hash, stop it cleanly: (state hash, its stderr). An
    idle lone node writes nothing after it listens, so that hash is its whole log's."""
    node = nodes.start(data_dir)
    got = state_hash(node)
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert got == folded_whole(data_dir)
    return got, node.stderr


def test_a_restart_starts_from_the_checkpoint_and_a_changed_one_is_refused(nodes, tmp_path):
    data_dir = tmp_path / "n"
    data_dir.mkdir(mode=0o700)
    held = asyncio.run(write_history(data_dir, JOBS))
    assert held >= JOBS * 6

    _, said = run_once(nodes, data_dir)  # folds everything, then saves at its stop
    assert not STARTED.search(said), said
    assert not REFUSED.search(said), said

    node = nodes.start(data_dir)  # each start re-announces: its free disk moved
    started_from = node.get_json("/api/v1/node")[1]["checkpoint"]
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    said = node.stderr
    started = STARTED.search(said)
    assert started, said
    assert started_from["position"] == int(started.group(1))
    assert int(started.group(1)) >= held
    assert int(started.group(2)) <= 5  # only what the node itself wrote since, if anything

    with sqlite3.connect(data_dir / "events.db") as conn:  # a bit flipped in one ended job
        job_id, digest = conn.execute("SELECT job_id, digest FROM ended_jobs LIMIT 1").fetchone()
        flipped = bytes([digest[0] ^ 1]) + digest[1:]
        conn.execute("UPDATE ended_jobs SET digest = ? WHERE job_id = ?", (flipped, job_id))
    _, said = run_once(nodes, data_dir)
    assert REFUSED.search(said), said
    assert not STARTED.search(said), said

    with sqlite3.connect(data_dir / "events.db") as conn:  # rewritten whole at that stop
        conn.execute("UPDATE checkpoint SET format = '0:older'")
    _, said = run_once(nodes, data_dir)  # (its rows would be refused first, had they stayed)
    assert "format 0:older" in REFUSED.search(said).group(1), said


def listings(node) -> list:
    """Pages of `GET /api/v1/jobs` from the newest, the middle and the oldest, and the oldest
    job described (folded again from the log)."""
    total = node.get_json("/api/v1/jobs?limit=1")[1]["total"]
    pages = []
    for offset, limit in [(0, 50), (total // 2, 7), (total - 3, 50)]:
        status, page = node.get_json(f"/api/v1/jobs?limit={limit}&offset={offset}")
        assert status == 200, page
        pages.append(page)
    oldest = pages[-1]["jobs"][-1]["id"]
    status, described = node.get_json(f"/api/v1/jobs/{oldest[:10]}?events=0")  # by a prefix
    assert status == 200, described
    return [total, pages, described["status"], len(described["executions"])]


def test_jobs_listed_from_the_rows_are_those_of_the_whole_fold(nodes, tmp_path):
    """The first start folds the whole log (ended jobs in memory); the second reads them from
    the rows its checkpoint wrote: the same pages, totals and descriptions."""
    data_dir = tmp_path / "n"
    data_dir.mkdir(mode=0o700)
    asyncio.run(write_history(data_dir, 200))
    node = nodes.start(data_dir)
    whole = listings(node)
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert not STARTED.search(node.stderr), node.stderr
    with sqlite3.connect(data_dir / "events.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM ended_jobs").fetchone()[0] >= 150
    node = nodes.start(data_dir)
    again = listings(node)
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert STARTED.search(node.stderr), node.stderr
    assert whole[0] >= 200
    assert again == whole


def walk(node, first: str, token_of, path_of) -> list[str]:
    """The ids of every page, each asked for with the token the page before gave."""
    ids, path = [], first
    while path:
        status, page = node.get_json(path)
        assert status == 200, page
        items = page.get("jobs", page.get("Items"))
        ids += [item.get("id", item.get("ID")) for item in items]
        token = token_of(page)
        path = path_of(token) if token else ""
    return ids


def test_pages_by_cursor_walk_the_whole_list_once(nodes, tmp_path):
    """On a node started from its checkpoint (ended jobs in rows, the newest held), pages
    asked for by the `next` token (and Bacalhau's NextToken) give every job once, in order."""
    data_dir = tmp_path / "n"
    data_dir.mkdir(mode=0o700)
    asyncio.run(write_history(data_dir, 200))
    run_once(nodes, data_dir)  # saves a checkpoint at its stop
    node = nodes.start(data_dir)
    status, whole = node.get_json("/api/v1/jobs?limit=1000")
    assert status == 200, whole
    assert whole["next"] is None
    everything = [job["id"] for job in whole["jobs"]]
    assert len(everything) == whole["total"] >= 200

    ids = walk(
        node, "/api/v1/jobs?limit=7", lambda p: p["next"], "/api/v1/jobs?limit=7&next={}".format
    )
    assert ids == everything
    status, half = node.get_json("/api/v1/jobs?limit=9&offset=100")  # offset, then cursor
    assert status == 200, half
    ids = walk(
        node,
        f"/api/v1/jobs?limit=11&next={half['next']}",
        lambda p: p["next"],
        "/api/v1/jobs?limit=11&next={}".format,
    )
    assert ids == everything[109:]

    orc = "/api/v1/orchestrator/jobs?limit=13"
    ids = walk(node, orc, lambda p: p["NextToken"], (orc + "&next_token={}").format)
    assert ids == everything[::-1]  # oldest first, as Bacalhau lists
    newest = orc + "&reverse=true&order_by=created_at"
    ids = walk(node, newest, lambda p: p["NextToken"], (newest + "&next_token={}").format)
    assert ids == everything
    status, wrong = node.get_json(f"/api/v1/jobs?next={half['next']}&offset=3")
    assert status == 400, wrong
    status, wrong = node.get_json(f"{orc}&order_by=id&next_token={half['next']}")
    assert status == 400, wrong
    assert node.stop(signal.SIGTERM) == 0, node.stderr
    assert STARTED.search(node.stderr), node.stderr
