"""Stop time against history (issue 17): SIGTERM to exit of a node holding a long log.

    python bench/stop.py [--sizes 1000,100000] [--keep DIR] [--spy]
                         [--moments folding,ready,checkpoint]

(`--keep DIR` builds the logs there and keeps them: a later run with it starts from them.)

For each size, writes a log of that many events (noop jobs decided and signed by the
scheduler's own code: tests/biglog.py) into a data dir, then stops a node on a copy of it at
the moments where a stop has had the most to do:

  whole, folding     no checkpoint yet; SIGTERM while it folds the log (/healthz answers,
                     /readyz not yet: the `listening on` line comes once it is ready)
  whole, ready       /readyz said ready: the fold is done, the first (full) checkpoint is due
  whole, checkpoint  after that first checkpoint is stored (read from the file, read-only)
  checkpoint, ready  started again from that checkpoint, stopped once ready (with the above)

Each line: seconds from SIGTERM until the process exited, its exit code, and what it said
about checkpoints on the way down. `--spy` dumps the stopping node's Python stacks
(`py-spy dump`, from the venv) 0.3 s and 1.5 s after SIGTERM if it is still running, to see
where a slow stop spends its time. Figures only: nothing here asserts.

Target from the issue: stop time independent of history (it was 0.3 s at 1k, 4.6 s at 1M).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from biglog import EVENTS_PER_JOB, write_history  # noqa: E402

from tests.procs import NodeProcess, wait_for  # noqa: E402

PY_SPY = REPO / ".venv" / "bin" / "py-spy"


def answers(url: str) -> int:
    """The status of a GET of `url` (0: no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def ready(node: NodeProcess) -> bool:
    return answers(node.url + "/readyz") == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def checkpoint_pos(data_dir: Path) -> int:
    """The log position of the stored checkpoint (0: none), read as any reader would."""
    uri = f"file:{data_dir / 'events.db'}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True, timeout=5) as conn:
            row = conn.execute("SELECT max(pos) FROM checkpoint").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


def spy(pid: int, after: list[float], out: list[str]) -> threading.Thread:
    def run() -> None:
        began = time.monotonic()
        for at in after:
            time.sleep(max(0.0, began + at - time.monotonic()))
            dumped = subprocess.run(
                [str(PY_SPY), "dump", "--native", "--pid", str(pid)], capture_output=True, text=True
            )
            if dumped.returncode:  # it exited meanwhile
                return
            out.append(f"--- {at:.1f} s after SIGTERM\n{dumped.stdout}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stop(node: NodeProcess, with_spy: bool) -> tuple[float, int, list[str], list[str]]:
    """SIGTERM; (seconds until exit, exit code, its checkpoint lines, stacks dumped)."""
    stacks: list[str] = []
    began = time.perf_counter()
    node.send(signal.SIGTERM)
    spying = spy(node.pid, [0.3, 1.5], stacks) if with_spy else None
    code = node.popen.wait(120)
    took = time.perf_counter() - began
    node.wait(30)
    if spying is not None:
        spying.join(30)
    said = [line.strip() for line in node.lines("stderr") if "checkpoint" in line]
    return took, code, said, stacks


def one(label: str, data_dir: Path, moment: str, with_spy: bool) -> None:
    api = f"http://127.0.0.1:{free_port()}"
    node = NodeProcess(data_dir, listen=api.removeprefix("http://"))
    try:
        if moment == "folding":  # alive, not ready: the start-up fold is running
            wait_for(lambda: answers(api + "/healthz") == 200, 600, "the node to answer")
            if answers(api + "/readyz") == 200:
                label += " (was ready)"
        else:
            node.wait_listening(600)
        if moment in ("ready", "checkpoint"):
            wait_for(lambda: ready(node), 600, "ready")
        if moment == "checkpoint":
            wait_for(lambda: checkpoint_pos(data_dir), 600, "the first checkpoint")
        took, code, said, stacks = stop(node, with_spy)
    finally:
        if node.returncode is None:
            node.kill()
    print(f"  {label:>18}: stop {took:.2f} s, exit {code}; {' / '.join(said) or '-'}")
    for stack in stacks:
        print("    " + stack.replace("\n", "\n    "))


def measure(size: int, root: Path, with_spy: bool, moments: set[str]) -> None:
    template = root / f"log-{size}"
    started = time.perf_counter()
    if (template / "events.db").exists():  # kept from an earlier run (--keep)
        print(f"\n== {size:,} events (the log kept in {template})")
    else:  # written aside, then renamed: an interrupted run leaves no log that looks whole
        partial = root / f"log-{size}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        held = asyncio.run(write_history(partial, max(1, size // EVENTS_PER_JOB)))
        partial.rename(template)
        print(f"\n== {held:,} events (log written in {time.perf_counter() - started:.0f} s)")
    for path in root.glob(f"node-{size}*"):
        shutil.rmtree(path)
    for moment in ("folding", "ready"):
        if moment in moments:
            data_dir = root / f"node-{size}-{moment}"
            shutil.copytree(template, data_dir)
            one(f"whole, {moment}", data_dir, moment, with_spy)
            shutil.rmtree(data_dir)
    if "checkpoint" in moments:
        data_dir = root / f"node-{size}"
        shutil.copytree(template, data_dir)
        one("whole, checkpoint", data_dir, "checkpoint", with_spy)
        one("checkpoint, ready", data_dir, "ready", with_spy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000", help="events per log, comma-separated")
    parser.add_argument("--keep", type=Path, default=None, help="build the logs here, keep them")
    parser.add_argument("--spy", action="store_true", help="py-spy dumps of slow stops")
    parser.add_argument(
        "--moments",
        default="folding,ready,checkpoint",
        help="which stops (each 'whole' one folds the whole log first: minutes at 1M)",
    )
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="edgebac-stop-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        for size in (int(s) for s in args.sizes.split(",") if s):
            measure(size, root, args.spy, set(args.moments.split(",")))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
