"""A node joining a network with a long history (issue 16): from the seeds' horizon, against
fetching all history.

    python bench/late_join.py [--events 100000] [--seeds 3] [--no-baseline] [--keep DIR]
                              [--history FILE]

Writes a log of that many events (noop jobs ended in 2023, signed by the scheduler's own code:
tests/biglog.py) and gives it to each seed, which folds it once and then prunes it with
`--retain-log 1h` (every job of it is older). A new node then joins with `--peers` naming
every seed. Printed, from its process start: until it listens (it has adopted the horizon by
then), until its version vector is the seeds' (caught up), and until a job submitted to the
first seed, which only the new node may run (a label), completes; its events, RSS and gossip
bytes received. The baseline, measured in the same run: a seed of the same history that does
not prune, and a new node joining it (it fetches every event). Figures only: nothing asserts.

Target from the issue: a new node useful (runs a job) within 10 s of joining the 1M-event
network: `--events 1000000` (building that history and folding it takes many minutes:
`--history FILE` gives the seeds a copy of an events.db written before, e.g. by
`bench/history.py --big --keep DIR`, whose checkpoint spares them the whole-log fold).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from biglog import EVENTS_PER_JOB, write_history  # noqa: E402
from history import call, free_port, rss_mb  # noqa: E402

from tests.procs import NodeProcess, wait_for  # noqa: E402

DONE = ("completed", "failed", "canceled")
LATE = {"engine": {"type": "noop", "stdout": "late"}, "retries": 0, "constraints": ["late=yes"]}


class Node:
    def __init__(self, data_dir: Path, policy: Path, *args: str) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.began = time.perf_counter()
        self.process = NodeProcess(
            data_dir, "--policy", str(policy), *args, listen=f"127.0.0.1:{self.port}"
        )

    def listening(self, timeout: float = 900) -> float:
        self.process.wait_listening(timeout)
        return time.perf_counter() - self.began

    def info(self) -> dict[str, Any]:
        return call(f"{self.api}/api/v1/node")[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()


def give_history(root: Path, events: int, dirs: list[Path], given: Path | None) -> int:
    source = root / "history"
    source.mkdir(mode=0o700)
    if given is not None:
        shutil.copy(given, source / "events.db")
        with sqlite3.connect(f"file:{source / 'events.db'}?mode=ro", uri=True) as conn:
            held = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    else:
        held = asyncio.run(write_history(source, max(1, events // EVENTS_PER_JOB)))
    for data_dir in dirs:
        data_dir.mkdir(mode=0o700)
        for name in ("events.db", "events.db-wal"):
            if (source / name).exists():
                shutil.copy(source / name, data_dir / name)
    return held


def first_folds(dirs: list[Path], policy: Path) -> None:
    """Each seed folds the history once and checkpoints its ended jobs at its clean stop
    (pruning takes only those); two at a time (two cores)."""

    def fold(data_dir: Path) -> None:
        node = Node(data_dir, policy)
        node.listening()
        wait_for(lambda: node.info().get("ready"), 900, "the first fold")
        node.stop()

    for at in range(0, len(dirs), 2):
        threads = [threading.Thread(target=fold, args=(d,)) for d in dirs[at : at + 2]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def settled(seeds: list[Node], pruned: bool) -> bool:
    infos = [seed.info() for seed in seeds]
    if any(not i.get("ready") for i in infos):
        return False
    if pruned and any((i.get("pruning") or {}).get("moving", True) for i in infos):
        return False
    if pruned and len({json.dumps(i.get("pruning", {}).get("jobs")) for i in infos}) != 1:
        return False
    return len({json.dumps(i.get("version_vector"), sort_keys=True) for i in infos}) == 1


def join(seeds: list[Node], root: Path, name: str, policy: Path, *flags: str) -> dict[str, Any]:
    (root / name).mkdir(mode=0o700, exist_ok=True)
    joiner = Node(
        root / name,
        policy,
        "--peers",
        ",".join(seed.address for seed in seeds),
        "--labels",
        "late=yes",
        *flags,
    )
    try:
        listening = joiner.listening()
        status, body = call(f"{seeds[0].api}/api/v1/jobs", LATE)
        assert status == 201, body
        job_id = body["job_id"]

        def done() -> bool:
            url = f"{seeds[0].api}/api/v1/jobs/{job_id}?events=0&wait_ms=2000"
            return call(url)[1].get("status") in DONE

        wait_for(done, 900, "the late node's job")
        job_s = time.perf_counter() - joiner.began
        target = seeds[0].info()["version_vector"]

        def caught_up() -> bool:
            vv = joiner.info().get("version_vector", {})
            return all(vv.get(author, 0) >= seq for author, seq in target.items())

        wait_for(caught_up, 1800, "the late node to catch up")
        caught_s = time.perf_counter() - joiner.began
        now = joiner.info()
        joined = [line for line in joiner.process.lines("stderr") if line.startswith("join:")]
        return {
            "listening_s": listening,
            "job_s": job_s,
            "caught_up_s": caught_s,
            "events": now["events"],
            "rss_mb": rss_mb(joiner.process.pid),
            "received_mb": now["gossip"].get("wire_bytes_received", 0) / 1e6,
            "said": joined[0] if joined else "(no horizon adopted)",
        }
    finally:
        joiner.stop()


def network(dirs: list[Path], policy: Path, *flags: str) -> list[Node]:
    seeds: list[Node] = []
    for data_dir in dirs:
        peers = ("--peers", ",".join(s.address for s in seeds)) if seeds else ()
        seeds.append(Node(data_dir, policy, *peers, *flags))
        seeds[-1].listening()
    return seeds


def show(label: str, got: dict[str, Any]) -> None:
    print(
        f"{label}: listening {got['listening_s']:.1f} s, its job done {got['job_s']:.1f} s, "
        f"caught up {got['caught_up_s']:.1f} s; {got['events']} events, "
        f"{got['rss_mb']:.0f} MB RSS, {got['received_mb']:.1f} MB received; {got['said']}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="Work here and leave it.")
    parser.add_argument("--history", type=Path, default=None, help="An events.db to start from.")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="edgebac-latejoin-"))
    root.mkdir(parents=True, exist_ok=True)
    policy = root / "noop.yaml"
    policy.write_text("engines: [noop]\n")
    seed_dirs = [root / f"seed{i}" for i in range(args.seeds)]
    baseline_dir = root / "whole"
    dirs = seed_dirs + ([] if args.no_baseline else [baseline_dir])
    started = time.perf_counter()
    held = give_history(root, args.events, dirs, args.history)
    first_folds(dirs, policy)  # from a given file's checkpoint: moments
    print(
        f"{held} events of history given to {len(dirs)} nodes, folded once, in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    try:
        if not args.no_baseline:
            whole = network([baseline_dir], policy)
            try:
                wait_for(lambda: settled(whole, False), 900, "the baseline seed")
                baseline = join(whole, root, "joins-whole", policy)
                show("joining a seed that keeps all history (baseline)", baseline)
            finally:
                for seed in whole:
                    seed.stop()
        prune = ("--retain-log", "1h")
        seeds = network(seed_dirs, policy, *prune)
        try:
            at = time.perf_counter()
            wait_for(lambda: settled(seeds, True), 1800, "the seeds to prune alike")
            pruned = seeds[0].info()["pruning"]
            print(
                f"{args.seeds} seeds pruned {pruned['jobs']} jobs alike in "
                f"{time.perf_counter() - at:.0f} s",
                flush=True,
            )
            late = join(seeds, root, "joins-pruned", policy, *prune, "--join-wait", "10m")
            show(f"joining {args.seeds} pruned seeds", late)
        finally:
            for seed in seeds:
                seed.stop()
        if not args.no_baseline:
            print(
                f"ratio (from the horizon / whole history): job done "
                f"{late['job_s'] / baseline['job_s']:.2f}x, caught up "
                f"{late['caught_up_s'] / baseline['caught_up_s']:.2f}x, bytes "
                f"{late['received_mb'] / max(baseline['received_mb'], 1e-9):.3f}x"
            )
        print("target: useful (its job done) within 10 s of joining the 1M-event network")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
