"""A node's data dir on disk after many jobs with output volumes, with and without retention.

    python bench/disk.py [--jobs 1000] [--concurrency 48]

One real node (fast preset) in a temporary data dir runs `--jobs` wasm jobs (fixtures/wasm/
io.wasm: copies its inline input into an output volume and writes a listing and a summary
there), submitted concurrently over the API; the module is uploaded once and named by CID, as
`edgebac wasm run` does for a module that big. Then the data dir's size on disk (allocated
blocks, as `du`) is measured by part: events.db with its WAL, content/, work/results/, the rest.

The node is stopped cleanly (its clean stop writes the checkpoint log pruning needs) and
started again with `--retain 1h --retain-log 1h` and its clock 2 hours ahead
(EDGEBAC_TEST_CLOCK_OFFSET_MS), so everything it ran is past both horizons by the node's
clock; the data dir's mtimes are set 2 hours back too, as the real clock would have them then
(the sweep judges files by their mtimes, in real time: node/retain.py). Once pruning has
taken the jobs and the first retention sweep (a few seconds after start) has run, the node is
stopped and measured again: what the node alone leaves. events.db is shown as the file is
(pruning gives its pages back: eventlog/vacuum.py) and as a VACUUM of a copy would make it.

The third measurement is `edgebac node gc --retain 1s` on the stopped node's data dir: the
same sweep with its horizon past everything (it should find next to nothing left).

Target (issue 16): total after <= 10% of before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.procs import NodeProcess, Nodes, run_edgebac, wait_for  # noqa: E402

MODULE = REPO / "fixtures" / "wasm" / "io.wasm"
AHEAD_MS = 2 * 3600 * 1000  # past a 1-hour retention
TARGET = 0.10
PARTS = ("events.db", "events.db-wal", "content/", "work/results/", "other")


def allocated(path: Path) -> int:
    """Bytes on disk (st_blocks, as `du`), not the apparent size."""
    try:
        return path.lstat().st_blocks * 512
    except OSError:
        return 0


def part_of(relative: Path) -> str:
    text = relative.as_posix()
    if text.startswith("events.db-"):  # -wal and -shm
        return "events.db-wal"
    if text == "events.db":
        return "events.db"
    if text.startswith("content/") or text == "content":
        return "content/"
    if text.startswith("work/results/") or text == "work/results":
        return "work/results/"
    return "other"


def sizes(data_dir: Path) -> dict[str, int]:
    """The data dir's allocated bytes by part (folders count their own blocks too)."""
    parts = dict.fromkeys(PARTS, 0)
    for folder, dirs, files in os.walk(data_dir):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            parts[part_of(path.relative_to(data_dir))] += allocated(path)
    return parts


def files_in(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder)) if folder.is_dir() else 0


def vacuumed(log_file: Path) -> int:
    """events.db's size after a VACUUM of a copy (what the freed pages are)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        source = sqlite3.connect(f"file:{log_file}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
            target.execute("VACUUM")
        finally:
            source.close()
            target.close()
        return allocated(copy) + allocated(Path(f"{copy}-wal"))


def backdate(data_dir: Path, seconds: float) -> None:
    """Every file's and folder's mtime `seconds` back: the real clock's view of the data dir
    that much later (the node's clock offset moves the node, not the file system)."""
    when = time.time() - seconds
    for folder, dirs, files in os.walk(data_dir):
        for name in [*dirs, *files]:
            os.utime(Path(folder, name), (when, when), follow_symlinks=False)


def upload_module(node: NodeProcess) -> str:
    request = urllib.request.Request(
        node.url + "/api/v1/content", data=MODULE.read_bytes(), method="POST"
    )
    request.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["cid"]


def io_spec(module_cid: str, index: int) -> dict:
    return {
        "engine": {"type": "wasm", "module": f"ipfs://{module_cid}", "args": ["/in", "/out"]},
        "inputs": [{"source": f"inline:job {index} input\n", "target": "/in", "name": "data.txt"}],
        "outputs": [{"name": "out", "path": "/out"}],
        "retries": 0,
    }


async def run_jobs(api: str, module_cid: str, count: int, concurrency: int) -> dict[str, int]:
    """Submit `count` jobs, at most `concurrency` in flight; the tally of how they ended."""
    connector = aiohttp.TCPConnector(limit=concurrency)  # under a node's per-source cap (64)
    gate = asyncio.Semaphore(concurrency)
    tally: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index: int) -> None:
            async with gate:
                async with session.post(f"{api}/api/v1/jobs", json=io_spec(module_cid, index)) as r:
                    body = await r.json()
                    assert r.status == 201, body
                job_id = body["job_id"]
                while True:
                    url = f"{api}/api/v1/jobs/{job_id}?events=0&wait_ms=30000"
                    async with session.get(url) as r:
                        view = await r.json()
                        assert r.status == 200, view
                    if view["status"] in ("completed", "failed", "canceled"):
                        break
            tally[view["status"]] = tally.get(view["status"], 0) + 1
            done = sum(tally.values())
            if done % max(1, count // 10) == 0:
                print(f"  {done}/{count} jobs ended", flush=True)

        await asyncio.gather(*(one(i) for i in range(count)))
    return tally


def node_info(node: NodeProcess) -> dict:
    status, body = node.get_json("/api/v1/node")
    assert status == 200, body
    return body


def wait_pruned(node: NodeProcess, jobs: int, data_dir: Path, timeout: float) -> dict:
    """Until pruning has taken every job, or neither it nor the data dir has changed for a
    while (a node that does not prune must not hang the benchmark)."""
    deadline = time.monotonic() + timeout
    last: tuple[int, int] | None = None
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        pruning = node_info(node)["pruning"] or {}
        now = (pruning.get("jobs", 0), sum(sizes(data_dir).values()))
        if now[0] >= jobs:
            return pruning
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > 20:
            return pruning
        time.sleep(1.0)
    return node_info(node)["pruning"] or {}


def mb(count: int) -> str:
    return f"{count / 1e6:9.2f} MB"


def show(columns: dict[str, dict[str, int]], jobs: int) -> None:
    names = list(columns)
    print(f"  {'part':<16}" + "".join(f"{n:>22}" for n in names))
    for part in [*PARTS, "total"]:
        row = "".join(
            f"{mb(sum(c.values()) if part == 'total' else c[part]):>22}" for c in columns.values()
        )
        print(f"  {part:<16}{row}")
    per_job = "".join(f"{sum(c.values()) / jobs / 1e3:>19.1f} KB" for c in columns.values())
    print(f"  {'per job':<16}{per_job}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--keep", type=Path, help="leave the data dir here (a new folder)")
    args = parser.parse_args()
    started = time.perf_counter()
    nodes = Nodes()
    with tempfile.TemporaryDirectory(prefix="edgebac-bench-disk-") as tmp:
        data_dir = args.keep or Path(tmp) / "node"
        try:
            node = nodes.start(data_dir)
            module_cid = upload_module(node)
            tally = asyncio.run(run_jobs(node.url, module_cid, args.jobs, args.concurrency))
            ran_s = time.perf_counter() - started
            print(f"{args.jobs} io.wasm jobs with an output volume: {tally} in {ran_s:.0f} s")
            assert node.stop() == 0, node.stderr()[-2000:]
            before = sizes(data_dir)
            before_vacuum = vacuumed(data_dir / "events.db")
            folders = len(list((data_dir / "work" / "results").iterdir()))
            blocks = files_in(data_dir / "content" / "blocks")
            print(f"  results folders {folders}, content blocks {blocks}", flush=True)

            backdate(data_dir, AHEAD_MS / 1000)
            pruning_started = time.perf_counter()
            offset = {"EDGEBAC_TEST_CLOCK_OFFSET_MS": str(AHEAD_MS)}
            flags = ("--retain", "1h", "--retain-log", "1h")
            node = nodes.start(data_dir, *flags, env=offset)
            pruning = wait_pruned(node, args.jobs, data_dir, timeout=600)
            pruned_s = time.perf_counter() - pruning_started
            wait_for(lambda: node_info(node)["retention"]["last_sweep"], 1800, "the first sweep")
            retention = node_info(node)["retention"]
            assert node.stop() == 0, node.stderr()[-2000:]
            pruned = sizes(data_dir)
            pruned_vacuum = vacuumed(data_dir / "events.db")
            print(
                f"restarted with {' '.join(flags)}, clock +2 h: pruning {pruning} in "
                f"{pruned_s:.0f} s; retention sweep every {retention.get('every_s')} s, "
                f"last {retention.get('last_sweep') or 'none yet'}"
            )
            print(
                f"  results folders {len(list((data_dir / 'work' / 'results').iterdir()))}, "
                f"content blocks {files_in(data_dir / 'content' / 'blocks')}",
                flush=True,
            )

            gc = run_edgebac(
                "node", "gc", "--data-dir", data_dir, "--retain", "1s", "--output", "json"
            )
            assert gc.returncode == 0, gc.stderr
            swept = sizes(data_dir)
            swept_vacuum = vacuumed(data_dir / "events.db")
            print(f"then `node gc --retain 1s` (what the node's sweep left): {gc.stdout.strip()}")
            print(
                f"  results folders {len(list((data_dir / 'work' / 'results').iterdir()))}, "
                f"content blocks {files_in(data_dir / 'content' / 'blocks')}"
            )
        finally:
            nodes.kill_all()

    print(f"\ndata dir on disk after {args.jobs} jobs (allocated blocks):")
    show({"no retention": before, "node, 1h (+2h)": pruned, "+ gc past 1h": swept}, args.jobs)
    vacuums = (before_vacuum, pruned_vacuum, swept_vacuum)
    print(f"  {'events.db VACUUM':<16}" + "".join(f"{mb(v):>22}" for v in vacuums))
    total = sum(before.values())
    for label, after, vacuum in (
        ("node alone (pruning and sweep)", pruned, pruned_vacuum),
        ("then node gc", swept, swept_vacuum),
    ):
        ratio = sum(after.values()) / total
        log = after["events.db"] + after["events.db-wal"]
        with_vacuum = (sum(after.values()) - log + vacuum) / total
        print(
            f"ratio after/before, {label}: {ratio:.3f} (events.db vacuumed: {with_vacuum:.3f})"
            f"  (target <= {TARGET:.2f})"
        )
    print(f"time taken: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
