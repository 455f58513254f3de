"""Noop jobs through real node processes: submit->completed latency and sustained throughput.

    python bench/jobs.py [--sequential 100] [--concurrent 1000] [--preset default]

For a 1-node and a 3-node loopback network (separate processes): p50/p99 latency of sequential
jobs (submit, then a long poll until the job ended), and jobs/s for `--concurrent` jobs
submitted at once. Targets: 3-node p50 <= 50 ms (Bacalhau's published figure for a trivial
job is about 1.3 s); throughput >= 200 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netfix import info, network_key, wait_converged
from tests.procs import Nodes

SPEC = {"engine": {"type": "noop", "stdout": "bench"}, "retries": 0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_job(session: aiohttp.ClientSession, api: str) -> str:
    async with session.post(f"{api}/api/v1/jobs", json=SPEC) as response:
        assert response.status == 201, await response.text()
        job_id = (await response.json())["job_id"]
    while True:
        url = f"{api}/api/v1/jobs/{job_id}?events=0&wait_ms=30000"
        async with session.get(url) as response:
            view = await response.json()
            assert response.status == 200, view
        if view["status"] in ("completed", "failed", "canceled"):
            return view["status"]


async def sequential(api: str, count: int) -> list[float]:
    latencies = []
    async with aiohttp.ClientSession() as session:
        await run_job(session, api)  # warm up connections and code paths
        for _ in range(count):
            started = time.perf_counter()
            status = await run_job(session, api)
            latencies.append(1000 * (time.perf_counter() - started))
            assert status == "completed", status
    return latencies


async def concurrent(api: str, count: int) -> tuple[float, dict[str, int]]:
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        statuses = await asyncio.gather(*(run_job(session, api) for _ in range(count)))
        elapsed = time.perf_counter() - started
    tally: dict[str, int] = {}
    for status in statuses:
        tally[status] = tally.get(status, 0) + 1
    return count / elapsed, tally


def measure(size: int, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        key = network_key(tmp)
        nodes = Nodes()
        try:
            network = []
            for index in range(size):
                peers = ("--peers", network[0].url.removeprefix("http://")) if network else ()
                flags = ("--network-key", str(key), "--preset", args.preset, *peers)
                network.append(
                    nodes.start(tmp / f"n{index}", *flags, listen=f"127.0.0.{index + 2}:0")
                )
            wait_converged(network, {info(n)["id"]: 1 for n in network})
            api = network[0].url
            latencies = asyncio.run(sequential(api, args.sequential))
            print(
                f"{size}-node: sequential noop jobs: p50 {percentile(latencies, 0.5):.1f} ms,"
                f" p99 {percentile(latencies, 0.99):.1f} ms over {len(latencies)} jobs"
                + ("  (target p50 <= 50 ms)" if size == 3 else ""),
                flush=True,
            )
            rate, tally = asyncio.run(concurrent(api, args.concurrent))
            print(
                f"{size}-node: {args.concurrent} concurrent noop jobs: {rate:.0f} jobs/s "
                f"{tally}  (target >= 200 jobs/s)",
                flush=True,
            )
        finally:
            nodes.kill_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    for size in (1, 3):
        measure(size, args)


if __name__ == "__main__":
    main()
