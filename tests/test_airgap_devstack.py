"""An air-gapped network (a namespace with only loopback) and the local devstack."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.procs import LISTENING, Nodes, clean_env, edgebac_argv, nodes_fixture, wait_for

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"


@pytest.fixture
def namespace():
    """A fresh network namespace whose only interface is its loopback, removed afterwards."""
    name = f"edgebac-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        links = subprocess.run(
            ["ip", "-n", name, "-o", "link"], check=True, capture_output=True, text=True
        ).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def inside(namespace: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *edgebac_argv(*args)]


def test_air_gapped_network_runs_a_wasm_job(nodes: Nodes, tmp_path, namespace):
    key = tmp_path / "network.key"
    made = subprocess.run(inside(namespace, "network", "init", key), capture_output=True)
    assert made.returncode == 0, made.stderr
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"engines": ["wasm"]}))
    urls = []
    for index in range(3):
        peers = ["--peers", urls[0].removeprefix("http://")] if urls else []
        argv = inside(
            namespace, "node", "--data-dir", tmp_path / f"n{index}", "--listen",
            f"127.0.0.{index + 2}:0", "--network-key", key, "--policy", policy,
            "--preset", "fast", *peers,
        )  # fmt: skip
        process = nodes.process(argv)
        urls.append(process.wait_for_line(LISTENING, 30).group(2))
    ran = subprocess.run(
        inside(
            namespace,
            "wasm",
            "run",
            "--api",
            urls[0],
            "--concurrency",
            "3",
            "--wait",
            "--output",
            "json",
            "-i",
            "inline:offline data\n:/in",
            "-o",
            "out:/out",
            WASM / "io.wasm",
            "/in",
            "/out",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert view["status"] == "completed"
    assert len({e["node"] for e in view["executions"].values()}) == 3
    got = subprocess.run(
        inside(namespace, "job", "get", view["id"], "--output-dir", tmp_path / "got",
               "--api", urls[1]),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    for execution_id in view["executions"]:
        listing = (tmp_path / "got" / execution_id / "out" / "listing.txt").read_text()
        assert listing.startswith("inline 13 ")


def _processes_under(root: Path, but: int) -> list[int]:
    """Pids other than `but` whose command line mentions `root` (the devstack's nodes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(root) in cmdline and int(entry.name) != but:
                found.append(int(entry.name))
    return found


def test_devstack_starts_runs_a_job_and_stops_clean(nodes: Nodes, tmp_path):
    root = tmp_path / "stack"
    port = 17000 + os.getpid() % 1000
    stack = nodes.process(
        edgebac_argv("devstack", "--nodes", "3", "--dir", root, "--listen", f"127.0.0.1:{port}")
    )
    stack.wait_for_line(re.compile(r"^Ctrl-C stops every node"), 60)
    assert len(re.findall(r"node\d: http://127\.0\.0\.1:\d+", stack.stdout)) == 3
    assert len(_processes_under(root, stack.pid)) == 3
    api = f"http://127.0.0.1:{port}"
    ran = subprocess.run(
        [*edgebac_argv("job", "run", "-", "--concurrency", "3", "--wait", "--api", api)],
        input=json.dumps({"engine": {"type": "noop", "stdout": "hi"}}),
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert ran.returncode == 0, ran.stderr
    # Its access rules let this client in, and no other.
    assert "access rules: " in stack.stdout
    from edgebac.eventlog.identity import create_key_file

    create_key_file(tmp_path / "stranger.key")
    stranger = subprocess.run(
        [*edgebac_argv("job", "list", "--api", api, "--client-key", tmp_path / "stranger.key")],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert stranger.returncode != 0
    assert "is not in this node's access rules" in stranger.stderr
    stack.send(signal.SIGINT)
    assert stack.wait(30) == 0
    wait_for(lambda: not _processes_under(root, stack.pid), 10, "no node process left")
    assert "devstack: stopped" in stack.stderr
