"""Footprint of the single-file edgebac: size, start time, memory.

    python bench/footprint.py [--pyz FILE] [--jobs 100] [--runs 10] [--more 600,1200]

Builds the pyz with zipapp/build.py (unless --pyz is given) and runs everything from it the way
a device would: `env -i python3.11 -I edgebac-....pyz`. Prints the pyz size; the cold first
start of `--help` (unpacking into an empty cache) and the warm start (median of --runs);
the resident memory (VmRSS from /proc) of an idle node after startup, with the default
engines (docker, wasm, noop) and with noop alone; and of the default node after --jobs noop
jobs submitted over its API, one after another, then after twice as many and after each total
of --more (a long-running node must not grow with every job it has seen).

Targets: pyz <= 20 MB, warm --help <= 0.4 s, idle node <= 80 MB RSS, growth after 100 jobs
<= 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.procs import Process, find_python311, wait_for  # noqa: E402

LISTENING = re.compile(r"listening on (http://\S+)")
NOOP = {"engine": {"type": "noop", "stdout": "bench"}, "retries": 0}
TARGETS = {"size_mb": 20.0, "warm_s": 0.4, "idle_mb": 80.0, "growth": 0.10}


def python311() -> str:
    return find_python311() or os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def build(out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, str(REPO / "zipapp" / "build.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip().splitlines()[-1])


class Device:
    """Runs the pyz with nothing but the interpreter and the variables given."""

    def __init__(self, pyz: Path, python: str, cache: Path) -> None:
        self.pyz, self.python, self.cache = pyz, python, cache

    def argv(self, *args: str) -> list[str]:
        env = f"EDGEBAC_PYZ_CACHE={self.cache}"
        return ["env", "-i", env, self.python, "-I", str(self.pyz), *args]

    def timed(self, *args: str) -> float:
        started = time.perf_counter()
        subprocess.run(self.argv(*args), capture_output=True, check=True)
        return time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def start_node(device: Device, data_dir: Path, *args: str) -> tuple[Process, str]:
    argv = device.argv("node", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args)
    node = Process(argv)
    url = node.wait_for_line(LISTENING, 60).group(1)
    return node, url


def settled_rss(node: Process, seconds: float = 3.0) -> float:
    """RSS once startup work (announce, first gossip rounds) is over."""
    time.sleep(seconds)
    return rss_mb(node.pid)


def request(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=40) as r:
        return json.loads(r.read())


def run_jobs(api: str, count: int) -> None:
    for _ in range(count):
        job_id = request(f"{api}/api/v1/jobs", NOOP)["job_id"]
        wait_for(
            lambda job_id=job_id: (
                request(f"{api}/api/v1/jobs/{job_id}?events=0&wait_ms=5000")["status"]
                in ("completed", "failed", "canceled")
            ),
            60,
            f"job {job_id}",
        )


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def measure_starts(device: Device, runs: int) -> None:
    bare = [time_bare(device.python) for _ in range(runs)]
    cold = device.timed("--help")
    warm = [device.timed("--help") for _ in range(runs)]
    median = statistics.median(warm)
    print(f"cold first start (--help, unpacks): {cold:.2f} s")
    print(
        f"warm start (--help): median {median:.3f} s, min {min(warm):.3f} s "
        f"(bare `python3 -I -c pass`: {statistics.median(bare):.3f} s) "
        f"target <= {TARGETS['warm_s']} s: {verdict(median <= TARGETS['warm_s'])}"
    )


def time_bare(python: str) -> float:
    started = time.perf_counter()
    subprocess.run(["env", "-i", python, "-I", "-c", "pass"], check=True)
    return time.perf_counter() - started


def measure_memory(device: Device, tmp: Path, jobs: int, more: list[int]) -> None:
    policy = tmp / "noop.yaml"
    policy.write_text("engines: [noop]\n")
    noop, _ = start_node(device, tmp / "noop", "--policy", str(policy))
    try:
        print(f"idle node, engines noop only: {settled_rss(noop):.1f} MB RSS")
    finally:
        noop.stop()
    node, api = start_node(device, tmp / "node")
    try:
        idle = settled_rss(node)
        ok = idle <= TARGETS["idle_mb"]
        print(f"idle node, default engines: {idle:.1f} MB RSS, target <= 80 MB: {verdict(ok)}")
        started = time.perf_counter()
        run_jobs(api, jobs)
        elapsed = time.perf_counter() - started
        after = settled_rss(node, 2.0)
        growth = (after - idle) / idle
        print(
            f"after {jobs} noop jobs ({elapsed:.1f} s): {after:.1f} MB RSS, growth "
            f"{growth:+.1%}, target <= +10%: {verdict(growth <= TARGETS['growth'])}"
        )
        done = jobs
        for total in [2 * jobs, *more]:
            run_jobs(api, total - done)
            done = max(done, total)
            again = settled_rss(node, 2.0)
            print(f"after {done} noop jobs: {again:.1f} MB RSS ({(again - idle) / idle:+.1%})")
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyz", type=Path, default=None, help="use this pyz, do not build")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--more", default="", help="more totals of jobs to measure after, e.g. 600,1200"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgebac-footprint-") as name:
        tmp = Path(name)
        pyz = args.pyz or build(tmp / "dist")
        size = pyz.stat().st_size / 1e6
        ok = size <= TARGETS["size_mb"]
        print(f"pyz: {pyz.name} {size:.2f} MB, target <= 20 MB: {verdict(ok)}")
        device = Device(pyz, python311(), tmp / "cache")
        print(f"python: {device.python}")
        measure_starts(device, args.runs)
        more = [int(n) for n in args.more.split(",") if n.strip()]
        measure_memory(device, tmp, args.jobs, more)


if __name__ == "__main__":
    main()
