"""The quick start's main job: a local network of nodes running a real job.

Starts `edgebac devstack` (3 real node processes on loopback, a private network key, data in
demo-data/), shows the nodes finding each other, runs a WebAssembly job (fixtures/wasm/io.wasm)
with an input volume and an output volume on all three at once and follows it to the end,
fetches and verifies every node's results, runs the same as a Docker job when a Docker engine
is present, then stops the network and re-verifies every signature and chain of a node's log.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "demo-data"
EDGEBAC = [sys.executable, "-m", "edgebac"]
API = "http://127.0.0.1:7700"

MODULE = ROOT / "fixtures" / "wasm" / "io.wasm"
READINGS = "inline:sensor-1 21.5C\nsensor-2 22.1C\nsensor-3 19.8C\n"
IMAGE = "edgebac-test/busybox:1"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def edgebac(*args: str, check: bool = True) -> str:
    shown = (repr(a) if "\n" in a or " " in a else a for a in args)
    print("$ edgebac " + " ".join(shown), flush=True)
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


def run_job(kind: str, *args: str) -> str:
    out = edgebac(kind, "run", "--concurrency", "3", "--wait", "--api", API, *args)
    return out.splitlines()[0].strip()


def show_results(job_id: str) -> None:
    target = STACK / "results" / job_id
    edgebac("job", "get", job_id, "--output-dir", str(target), "--api", API)
    first = sorted(p for p in target.iterdir() if p.is_dir())[0]
    for path in sorted(first.rglob("*")):
        if path.is_file():
            print(f"--- {path.relative_to(target)}")
            print(path.read_text(errors="replace").rstrip())


def docker_ready() -> bool:
    """A Docker engine answers and the offline test image can be built (no registry needed)."""
    if shutil.which("docker") is None:
        return False
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return False
    build = ROOT / "scripts" / "build-test-image.sh"
    return subprocess.run(["bash", str(build)], capture_output=True, check=False).returncode == 0


def main() -> None:
    shutil.rmtree(STACK, ignore_errors=True)
    step("start a private network of 3 nodes on this machine")
    stack = start_stack()
    try:
        step("the nodes found each other by gossip")
        edgebac("node", "list", "--api", API)
        step("run a WebAssembly job on all three nodes: an input volume in, an output volume out")
        job_id = run_job(
            "wasm",
            "-i",
            f"{READINGS}:/input",
            "-o",
            "readings:/output",
            str(MODULE),
            "/input",
            "/output",
        )
        step("describe it: executions, results, and the signed events that made it happen")
        edgebac("job", "describe", job_id, "--api", API)
        step("fetch every node's results (verified block by block) and show one")
        show_results(job_id)
        if docker_ready():
            step("a Docker engine is here: the same kind of job in a container")
            job_id = run_job(
                "docker",
                "-i",
                f"{READINGS}:/input",
                "-o",
                "apples:/output_folder",
                IMAGE,
                "sh",
                "-c",
                "ls -l /input > /output_folder/file.txt; cat /input/*",
            )
            show_results(job_id)
    finally:
        step("stop the network")
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=30)
    step("re-verify every signature and hash chain in node1's log")
    edgebac("log", "verify", "--data-dir", str(STACK / "node1"))
    print(f"\nThe network's data is in {STACK}.")


if __name__ == "__main__":
    main()
