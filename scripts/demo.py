"""The quick start's main job, for now: a node that appends, shows and verifies its events.

Starts a real `edgebac node` on a free loopback port with a fresh data directory, asks its API
who it is, restarts it with new labels (it announces the change: one more signed event), then
shows the log and re-verifies every signature and chain. Later issues grow this into a local
network of nodes running a real job.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "demo-data" / "node-1"
EDGEBAC = [sys.executable, "-m", "edgebac"]


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def start_node(*flags: str) -> tuple[subprocess.Popen[str], str]:
    command = [*EDGEBAC, "node", "--data-dir", str(DATA_DIR), "--listen", "127.0.0.1:0", *flags]
    print("$ " + " ".join(command[2:]), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on " not in line:
        process.kill()
        sys.exit(f"the node did not start (exit code {process.wait()})")
    print(line.rstrip(), flush=True)
    return process, line.split("listening on ", 1)[1].split()[0]


def stop_node(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    print(f"node stopped (exit code {code})", flush=True)
    if code != 0:
        sys.exit("the node did not stop cleanly")


def get_json(url: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run(*args: str) -> None:
    print("$ edgebac " + " ".join(args), flush=True)
    result = subprocess.run([*EDGEBAC, *args], check=False)
    if result.returncode != 0:
        sys.exit(f"edgebac {args[0]} {args[1]} failed")


def main() -> None:
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    step("start a node: it creates its identity and announces itself in its log")
    process, url = start_node()
    info = get_json(f"{url}/api/v1/node")
    print(json.dumps(info, indent=2))
    stop_node(process)

    step("restart it with labels: same identity, and it appends a new announcement")
    process, url = start_node("--labels", "site=lab,rack=3")
    events = get_json(f"{url}/api/v1/events")["events"]
    print(f"{len(events)} events; the newest: {json.dumps(events[-1]['body'])}")
    stop_node(process)

    step("show the signed log and verify every signature and chain")
    run("log", "show", "--data-dir", str(DATA_DIR))
    run("log", "verify", "--data-dir", str(DATA_DIR))
    print(f"\nThe node's data directory is {DATA_DIR}.")


if __name__ == "__main__":
    main()
