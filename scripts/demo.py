"""The quick start's main job: a local network of nodes running a real job.

Starts `edgebac devstack` (3 real node processes on loopback, a private network key, data in
demo-data/), shows the nodes finding each other, runs a job on all three at once and follows
it to the end, describes it, then stops the network and re-verifies every signature and chain
of a node's log.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "demo-data"
EDGEBAC = [sys.executable, "-m", "edgebac"]
API = "http://127.0.0.1:7700"

SPEC = {
    "name": "hello-edge",
    "engine": {"type": "noop", "stdout": "hello from the edge\n", "duration_ms": 300},
    "resources": {"cpu": "100m", "memory": "16Mi"},
    "timeout_s": 60,
}


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def edgebac(*args: str, check: bool = True) -> str:
    print("$ edgebac " + " ".join(args), flush=True)
    result = subprocess.run([*EDGEBAC, *args], capture_output=True, text=True, check=False)
    sys.stderr.write(result.stderr)
    print(result.stdout, end="", flush=True)
    if check and result.returncode != 0:
        raise SystemExit(f"edgebac {' '.join(args[:2])} failed (exit code {result.returncode})")
    return result.stdout


def start_stack() -> subprocess.Popen[str]:
    command = [
        *EDGEBAC,
        "devstack",
        "--nodes",
        "3",
        "--dir",
        str(STACK),
        "--listen",
        "127.0.0.1:7700",
    ]
    print("$ edgebac " + " ".join(command[3:]), flush=True)
    stack = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert stack.stdout is not None
    for line in stack.stdout:
        print(line, end="", flush=True)
        if line.startswith("Ctrl-C"):
            return stack
    raise SystemExit(f"devstack did not start (exit code {stack.wait()})")


def main() -> None:
    shutil.rmtree(STACK, ignore_errors=True)
    step("start a private network of 3 nodes on this machine")
    stack = start_stack()
    try:
        step("the nodes found each other by gossip")
        edgebac("node", "list", "--api", API)
        step("run a job on all three nodes at once and follow it")
        spec = STACK / "job.json"
        spec.write_text(json.dumps(SPEC, indent=2))
        job_id = edgebac("job", "run", str(spec), "--concurrency", "3", "--wait", "--api", API)
        step("describe it: executions, results, and the signed events that made it happen")
        edgebac("job", "describe", job_id.splitlines()[0].strip(), "--api", API)
    finally:
        step("stop the network")
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=30)
    step("re-verify every signature and hash chain in node1's log")
    edgebac("log", "verify", "--data-dir", str(STACK / "node1"))
    print(f"\nThe network's data is in {STACK}.")


if __name__ == "__main__":
    main()
