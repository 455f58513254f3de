"""Executor overhead: raw Docker and raw wasmtime vs the same job through a 1-node edgebac.

    python bench/executors.py [--runs 10] [--wasm-runs 50] [--preset default]

- docker: `docker run --rm IMAGE true` (the CLI, one process per run) vs a docker job running
  `true` in the same image, submit -> job completed (long poll). Target: job <= 1.2 x raw.
- wasm: fixtures/wasm/hello.wasm run by wasmtime in this process, compiled once (instantiate
  + run; and, for reference, with a compile each time as `wasmtime run` without a cache does)
  vs the same module as an edgebac wasm job (sent inline). Target: job p50 <= raw p50 + 20 ms.
- reference: a noop job's p50, the scheduling path alone (submit, bid, accept, events).
Needs a Docker engine and the test image (scripts/docker-engine.sh, scripts/build-test-image.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.procs import Nodes

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "fixtures" / "wasm" / "hello.wasm"
IMAGE = "edgebac-test/busybox:1"
NOOP_SPEC = {"engine": {"type": "noop"}, "retries": 0}


def p50(values: list[float]) -> float:
    return statistics.median(values)


def raw_docker(runs: int) -> list[float]:
    times = []
    for _ in range(runs + 1):  # the first run warms the engine's caches
        started = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", IMAGE, "true"], check=True, capture_output=True)
        times.append(1000 * (time.perf_counter() - started))
    return times[1:]


def raw_wasm(runs: int, compile_each: bool) -> list[float]:
    from wasmtime import Engine, Linker, Module, Store, WasiConfig

    engine = Engine()
    module = Module.from_file(engine, str(HELLO))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            started = time.perf_counter()
            if compile_each:
                module = Module.from_file(engine, str(HELLO))
            store = Store(engine)
            wasi = WasiConfig()
            wasi.argv = ["hello"]
            wasi.stdout_file = f"{tmp}/stdout"
            wasi.stderr_file = f"{tmp}/stderr"
            store.set_wasi(wasi)
            linker = Linker(engine)
            linker.define_wasi()
            linker.instantiate(store, module).exports(store)["_start"](store)
            times.append(1000 * (time.perf_counter() - started))
    return times


async def run_job(session: aiohttp.ClientSession, api: str, spec: dict) -> float:
    started = time.perf_counter()
    async with session.post(f"{api}/api/v1/jobs", json=spec) as response:
        assert response.status == 201, await response.text()
        job_id = (await response.json())["job_id"]
    while True:
        url = f"{api}/api/v1/jobs/{job_id}?events=0&wait_ms=30000"
        async with session.get(url) as response:
            view = await response.json()
        if view["status"] in ("completed", "failed", "canceled"):
            assert view["status"] == "completed", view
            return 1000 * (time.perf_counter() - started)


async def edgebac_jobs(api: str, spec: dict, runs: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        await run_job(session, api, spec)  # warm up: image set, module cache, connections
        return [await run_job(session, api, spec) for _ in range(runs)]


def report(name: str, raw: list[float], job: list[float], target: str) -> None:
    r, j = p50(raw), p50(job)
    print(
        f"{name}: raw p50 {r:.1f} ms, edgebac job p50 {j:.1f} ms, "
        f"ratio {j / r:.2f}x, difference {j - r:+.1f} ms  ({target})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10, help="docker runs of each kind")
    parser.add_argument("--wasm-runs", type=int, default=50, help="wasm runs of each kind")
    parser.add_argument("--preset", default="default")
    args, _ = parser.parse_known_args()
    docker_spec = {"engine": {"type": "docker", "image": IMAGE, "args": ["true"]}, "retries": 0}
    module = "inline:base64:" + base64.b64encode(HELLO.read_bytes()).decode()
    wasm_spec = {"engine": {"type": "wasm", "module": module, "args": []}, "retries": 0}
    with tempfile.TemporaryDirectory() as tmp:
        nodes = Nodes()
        try:
            node = nodes.start(Path(tmp) / "node", "--preset", args.preset)
            raw = raw_docker(args.runs)
            job = asyncio.run(edgebac_jobs(node.url, docker_spec, args.runs))
            report("docker", raw, job, "target: ratio <= 1.2")
            raw_compiled = raw_wasm(args.wasm_runs, compile_each=False)
            raw_compiling = raw_wasm(max(5, args.wasm_runs // 10), compile_each=True)
            job = asyncio.run(edgebac_jobs(node.url, wasm_spec, args.wasm_runs))
            report("wasm", raw_compiled, job, "target: difference <= +20 ms")
            noop = asyncio.run(edgebac_jobs(node.url, NOOP_SPEC, args.wasm_runs))
            print(
                f"reference: noop job p50 {p50(noop):.1f} ms (scheduling alone); wasm executor "
                f"share of the wasm job {p50(job) - p50(noop):+.1f} ms",
                flush=True,
            )
            print(f"wasm: raw with a compile per run p50 {p50(raw_compiling):.1f} ms", flush=True)
        finally:
            nodes.kill_all()


if __name__ == "__main__":
    main()
