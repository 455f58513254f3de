"""Start-up against history (issue 16): what a node costs after a long life, with and without
a checkpoint.

    python bench/history.py [--sizes 10000,100000] [--big] [--keep DIR [--reuse]] [--skip-whole]

For each size, writes a log of that many events (noop jobs of another requester and compute
node, six events each, decided and signed by the scheduler's own code: tests/biglog.py) into a
fresh data dir, then starts a node on it twice: first with no checkpoint (it folds the whole
log, and saves one at its clean stop), then from that checkpoint. Each time it prints: the time
from process start until the node listens, and until a noop job submitted at once (retried
while the node says it is not ready) completes; RSS after that and after 1,000 more jobs;
`GET /api/v1/jobs` latency, median of 20: the first page, a page half-way down by `offset`, and the
same page by the `next` cursor the page before it gave; and `GET /api/v1/jobs/ID` of the oldest
job (folded again from the log). Then, in this process, what a checkpoint of that log costs:
the snapshot taken on the event loop (the only part that blocks it), packing and writing on the
writer's thread, reading and loading, and its size. `--big` adds 1,000,000 events (building
that log takes several minutes); `--skip-whole` starts the node only from the checkpoint taken
in-process (the whole-log start of 1M events takes minutes); `--keep DIR --reuse` starts on the
logs an earlier `--keep DIR` run left there (a `--skip-whole` run's keep their checkpoint),
without building them or measuring the in-process checkpoint again. Figures only: nothing here
asserts.

Targets from the issue: start-up at 1M events <= 3 s and <= 1.5 x start-up at 10k.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from biglog import EVENTS_PER_JOB, write_history  # noqa: E402

from edgebac.eventlog.checkpoints import CheckpointWrite  # noqa: E402
from edgebac.eventlog.clock import HybridClock  # noqa: E402
from edgebac.eventlog.store import EventLog  # noqa: E402
from edgebac.node.checkpoints import to_write  # noqa: E402
from edgebac.node.runner import JOB_EVENTS_MAX, RETENTION  # noqa: E402
from edgebac.scheduler import checkpoint  # noqa: E402
from edgebac.scheduler.ended_rows import StoredEnded  # noqa: E402
from edgebac.scheduler.projection import Projection  # noqa: E402
from tests.procs import LISTENING, NodeProcess, wait_for  # noqa: E402

NOOP = {"engine": {"type": "noop", "stdout": "bench"}, "retries": 0}
DONE = ("completed", "failed", "canceled")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError):
        return 0, {}


def one_start(data_dir: Path, port: int, policy: Path) -> dict[str, float]:
    """Start a node on `data_dir`, submit a job as soon as it takes one, stop it cleanly."""
    api = f"http://127.0.0.1:{port}"
    began = time.perf_counter()
    node = NodeProcess(data_dir, "--policy", str(policy), listen=f"127.0.0.1:{port}")
    seen: dict[str, float] = {}

    def listening() -> None:
        node.wait_for_line(LISTENING, 600)
        seen["listening"] = time.perf_counter() - began

    watcher = threading.Thread(target=listening, daemon=True)
    watcher.start()
    try:

        def submitted() -> str | None:
            status, body = call(f"{api}/api/v1/jobs", NOOP)
            return body["job_id"] if status == 201 else None

        job_id = wait_for(submitted, 600, "the node to take a job")
        wait_for(
            lambda: (
                call(f"{api}/api/v1/jobs/{job_id}?events=0&wait_ms=5000")[1].get("status") in DONE
            ),
            120,
            f"job {job_id}",
        )
        job_s = time.perf_counter() - began
        watcher.join(600)
        listening_s = seen["listening"]
        rss = rss_mb(node.pid)
        lists, deep, cursor, describes = [], [], [], []
        total = call(f"{api}/api/v1/jobs?limit=1")[1]["total"]
        oldest = call(f"{api}/api/v1/jobs?limit=1&offset={total - 1}")[1]["jobs"][0]["id"]
        half = call(f"{api}/api/v1/jobs?limit=1&offset={total // 2 - 1}")[1]["next"]
        for _ in range(20):
            for url, times in [
                ("/api/v1/jobs?limit=50", lists),
                (f"/api/v1/jobs?limit=50&offset={total // 2}", deep),
                (f"/api/v1/jobs?limit=50&next={half}", cursor),  # the same page, by its key
                (f"/api/v1/jobs/{oldest}?events=0", describes),
            ]:
                started = time.perf_counter()
                status, _ = call(f"{api}{url}")
                times.append((time.perf_counter() - started) * 1000)
                assert status == 200, url
        said = [line.strip() for line in node.lines("stderr") if "checkpoint" in line]
        rss_more = rss_after_jobs(api, node.pid, MORE_JOBS)
    finally:
        node.stop()
    return {
        "job_s": job_s,
        "listening_s": listening_s,
        "rss_mb": rss,
        "rss_more_mb": rss_more,
        "list_ms": statistics.median(lists),
        "deep_ms": statistics.median(deep),
        "cursor_ms": statistics.median(cursor),
        "describe_ms": statistics.median(describes),
        "said": said[-1] if said else "(no checkpoint line)",
    }


MORE_JOBS = 1_000


def rss_after_jobs(api: str, pid: int, jobs: int) -> float:
    """RSS once `jobs` more noop jobs, submitted from 8 threads, have all ended: what a node
    holds of its own recent work stays bounded (ended jobs go to the rows)."""
    ids: list[str] = []

    def submit(count: int) -> None:
        for _ in range(count):
            status, body = call(f"{api}/api/v1/jobs", NOOP)
            if status == 201:
                ids.append(body["job_id"])

    threads = [threading.Thread(target=submit, args=(jobs // 8,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for job_id in ids:
        wait_for(
            lambda job_id=job_id: (
                call(f"{api}/api/v1/jobs/{job_id}?events=0&wait_ms=5000")[1].get("status") in DONE
            ),
            120,
            f"job {job_id}",
        )
    return rss_mb(pid)


async def checkpoint_costs(db: Path) -> dict[str, float]:
    """In this process: fold the log as a node does, then take, write, read and load one."""
    log = await EventLog.open(db, HybridClock(60_000))
    try:
        state = Projection(RETENTION)
        after = 0
        started = time.perf_counter()
        while rows := await log.since(after, 5000):
            state.apply(event for _, event in rows)
            after = rows[-1][0]
        while state.needs_reload:  # as the runner does before it decides (or checkpoints)
            job_id = min(state.needs_reload)
            state.reload(job_id, await log.by_job(job_id, limit=JOB_EVENTS_MAX))
        fold_s = time.perf_counter() - started
        started = time.perf_counter()
        snapshot = checkpoint.snapshot(state, full=True)
        snapshot_ms = (time.perf_counter() - started) * 1000
        sizes: dict[str, int] = {}

        def prepare() -> CheckpointWrite:
            write = to_write(snapshot)
            sizes["core"] = len(write.body)
            sizes["rows"] = sum(len(row[-1]) for row in [*write.jobs, *write.executions])
            return write

        lags: list[float] = []

        async def ticker() -> None:  # how late the loop runs a 1 ms sleep meanwhile
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append((time.perf_counter() - before) * 1000 - 1)

        ticking = asyncio.create_task(ticker())
        started = time.perf_counter()
        state_hash = await log.write_checkpoint(log.last_pos, prepare)
        write_ms = (time.perf_counter() - started) * 1000
        ticking.cancel()
        rows = StoredEnded(log.ended_reader())
        state.evicted.committed(rows)  # the summaries are read from the rows from now on
        started = time.perf_counter()
        checkpoint.snapshot(state, full=False)  # what a periodic one copies
        incremental_ms = (time.perf_counter() - started) * 1000
        state.evicted.failed()
        started = time.perf_counter()
        stored = await log.read_checkpoint()
        assert stored is not None
        loaded = checkpoint.load(stored.body, rows, stored.state_hash, RETENTION)
        load_s = time.perf_counter() - started
        assert loaded.state_hash() == state_hash
        rows.close()
    finally:
        await log.close()
    return {
        "fold_s": fold_s,
        "snapshot_ms": snapshot_ms,
        "incremental_ms": incremental_ms,
        "write_ms": write_ms,
        "lag_ms": max(lags, default=0.0),
        "load_s": load_s,
        "core_kb": sizes["core"] / 1024,
        "rows_kb": sizes["rows"] / 1024,
        "ended": stored.ended_rows,
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(size: int, root: Path, policy: Path, skip_whole: bool, reuse: bool) -> None:
    template = root / f"log-{size}"
    if reuse and (template / "events.db").exists():  # a log --keep built, its checkpoint in
        print(f"\n== {size:,} events (the log kept in {template})")
        costs = None
    else:
        template.mkdir(mode=0o700)
        started = time.perf_counter()
        held = asyncio.run(write_history(template, max(1, size // EVENTS_PER_JOB)))
        print(f"\n== {held:,} events (log written in {time.perf_counter() - started:.0f} s)")
        costs = asyncio.run(checkpoint_costs(template / "events.db"))
    if not skip_whole:
        with sqlite_connection(template / "events.db") as conn:  # the node starts without one
            for table in ("checkpoint", "ended_jobs", "ended_executions"):
                conn.execute(f"DELETE FROM {table}")
    data_dir = root / f"node-{size}"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(template, data_dir)
    port = free_port()
    for label in ("from checkpoint",) if skip_whole else ("whole log", "from checkpoint"):
        got = one_start(data_dir, port, policy)
        print(
            f"{label:>16}: listening {got['listening_s']:.2f} s, job done "
            f"{got['job_s']:.2f} s after process start; RSS {got['rss_mb']:.0f} MB "
            f"({got['rss_more_mb']:.0f} MB after {MORE_JOBS:,} more jobs); "
            f"GET /api/v1/jobs {got['list_ms']:.1f} ms (half-way page {got['deep_ms']:.1f} ms, "
            f"by cursor {got['cursor_ms']:.1f} ms); oldest job {got['describe_ms']:.1f} ms\n"
            f"{'':>18}{got['said']}"
        )
    if costs is None:
        return
    print(
        f"  checkpoint in-process: fold {costs['fold_s']:.2f} s; snapshot on the loop "
        f"{costs['snapshot_ms']:.1f} ms full, {costs['incremental_ms']:.1f} ms incremental; "
        f"pack+write {costs['write_ms']:.0f} ms (loop late by {costs['lag_ms']:.1f} ms at "
        f"most meanwhile); read+load {costs['load_s']:.2f} s; "
        f"{costs['core_kb']:.0f} KB core + {costs['rows_kb']:.0f} KB in "
        f"{costs['ended']:,} ended-job rows"
    )


def sqlite_connection(path: Path) -> Any:
    import sqlite3

    return sqlite3.connect(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="events per log, comma-separated")
    parser.add_argument("--big", action="store_true", help="also 1,000,000 events (slow)")
    parser.add_argument("--keep", type=Path, default=None, help="build the logs here, keep them")
    parser.add_argument(
        "--skip-whole", action="store_true", help="start only from the in-process checkpoint"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: start on the logs (and checkpoints) kept there by an earlier run",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([1_000_000] if args.big else [])
    root = args.keep or Path(tempfile.mkdtemp(prefix="edgebac-history-"))
    root.mkdir(parents=True, exist_ok=True)
    policy = root / "noop.yaml"
    policy.write_text("engines: [noop]\n")
    try:
        for size in sizes:
            measure(size, root, policy, args.skip_whole, args.reuse)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
