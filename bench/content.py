"""The content store: import a folder, and fetch it from a peer over loopback, verified.

    python bench/content.py [--mb 200] [--dir DIR]

Makes a folder of `--mb` MiB (one big file, many 2 MiB files and some small ones), warms the
page cache, then measures in the same run: `sha256sum` and `cp -r` of the folder (the
yardsticks), hashlib's sha256 in one thread, `BlockStore.import_path` (chunk, hash, write
every block, one syncfs at the end), and `Fetcher.fetch` from a peer process serving the
store over HTTP on 127.0.0.1 (every block verified on both sides, written to a second
store). Each step starts with nothing dirty in the page cache.
Targets: import >= 0.5 x sha256sum; peer fetch >= 100 MB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.cid import CID
from edgebac.sinks.fetch import Fetcher

MiB = 1024 * 1024
PEER = """
import sys
from aiohttp import web
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.serve import add_content_routes
app = web.Application()
add_content_routes(app, BlockStore(sys.argv[1]))
port = int(sys.argv[2])
web.run_app(app, host="127.0.0.1", port=port, print=lambda *a: print("ready", flush=True))
"""


def make_folder(root: Path, total_mb: int) -> int:
    big = total_mb // 2
    (root / "small").mkdir(parents=True)
    with open(root / "big.bin", "wb") as f:
        for _ in range(big):
            f.write(os.urandom(MiB))
    for i in range((total_mb - big) // 2):
        (root / f"part-{i:03d}.bin").write_bytes(os.urandom(2 * MiB))
    for i in range(100):
        (root / "small" / f"s{i}.txt").write_bytes(os.urandom(1000 + i))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


CPU_USED = [0.0]  # CPU seconds of this process during the last `timed` call


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    os.sync()  # nothing dirty left from the previous step (the import ends with a syncfs)
    cpu, started = cpu_seconds(), time.perf_counter()
    fn()
    CPU_USED[0] = cpu_seconds() - cpu
    return time.perf_counter() - started


def hashlib_sha256(paths: list[str]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            h = hashlib.sha256()
            while chunk := f.read(MiB):
                h.update(chunk)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def fetch(store_dir: Path, into: Path, cid: CID) -> tuple[float, int, float, float]:
    """(seconds, bytes fetched, client CPU seconds, peer CPU seconds) of one verified fetch."""
    port = free_port()
    peer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PEER, str(store_dir), str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert peer.stdout is not None
        await peer.stdout.readline()  # "ready"
        peer_cpu = _proc_cpu(peer.pid)
        async with Fetcher(BlockStore(into), concurrency=4) as fetcher:
            cpu, started = cpu_seconds(), time.perf_counter()
            result = await fetcher.fetch(cid, [f"http://127.0.0.1:{port}"])
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        return seconds, result.bytes_fetched, cpu, _proc_cpu(peer.pid) - peer_cpu
    finally:
        peer.terminate()
        await peer.wait()


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgebac-bench-", dir=args.dir))
    try:
        src = work / "src"
        size = make_folder(src, args.mb)
        paths = files(src)
        hashlib_sha256(paths)  # warm the page cache
        mb = size / 1e6
        rate = {
            "sha256sum": mb
            / timed(lambda: subprocess.run(["sha256sum", *paths], capture_output=True, check=True)),
            "cp -r": mb
            / timed(lambda: subprocess.run(["cp", "-r", str(src), str(work / "copy")], check=True)),
            "hashlib sha256 (1 thread)": mb / timed(lambda: hashlib_sha256(paths)),
        }
        store = BlockStore(work / "store-a")
        link = None

        def do_import() -> None:
            nonlocal link
            link = store.import_path(src)

        rate["import into store"] = mb / timed(do_import)
        import_cpu = CPU_USED[0] * 1000 / mb
        assert link is not None
        seconds, fetched, client, peer = asyncio.run(
            fetch(work / "store-a", work / "store-b", link.cid)
        )
        rate["fetch from peer (verified)"] = fetched / 1e6 / seconds
        fetch_cpu = (client + peer) * 1000 / (fetched / 1e6)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"content store: {size / MiB:.0f} MiB in {len(paths)} files, root {link.cid}")
        print(f"  ({os.cpu_count()} cores, load average {load})")
        for name, value in rate.items():
            print(f"  {name:<28} {value:8.0f} MB/s")
        ratio = rate["import into store"] / rate["sha256sum"]
        print(f"  import / sha256sum = {ratio:.2f} (target >= 0.5); CPU {import_cpu:.1f} ms/MB")
        print(
            f"  fetch {rate['fetch from peer (verified)']:.0f} MB/s (target >= 100); "
            f"CPU {fetch_cpu:.1f} ms/MB (client + peer), so about "
            f"{2000 / fetch_cpu:.0f} MB/s with two idle cores"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
