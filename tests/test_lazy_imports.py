"""The CLI stays light: `--help` and client commands never import the heavy SDKs.

docker, wasmtime and boto3 cost hundreds of milliseconds and megabytes to import; only a node
that enables an engine or meets an s3:// input loads them. Each command runs in a fresh
interpreter that reports, at exit, which of those modules it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import Nodes, clean_env, nodes_fixture

WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
HEAVY = ("docker", "wasmtime", "boto3", "botocore", "aiohttp")
DEAD_API = "http://127.0.0.1:9"  # nothing listens on the discard port: commands fail fast

PROBE = f"""
import atexit, json, sys
atexit.register(lambda: print("LOADED " + json.dumps(
    sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr))
sys.argv = ["edgebac", *sys.argv[1:]]
from edgebac.cli import main
main()
"""


def loaded(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED "))
    return json.loads(line.removeprefix("LOADED "))


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("--version",),
        ("node", "--help"),
        ("job", "list", "--api", DEAD_API),
        ("job", "describe", "j-0", "--api", DEAD_API),
        ("node", "list", "--api", DEAD_API),
        ("docker", "run", "--api", DEAD_API, "-i", "s3://b/k*:/in", "busybox:1", "ls"),
        ("wasm", "run", "--api", DEAD_API, "--wait", str(WASM / "hello.wasm")),
        ("wasm", "run", "--help"),
        ("network", "--help"),
        ("log", "show", "--help"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_client_commands_do_not_import_heavy_sdks(args):
    assert loaded(*args) == []


def test_network_init_is_light_too(tmp_path):
    assert loaded("network", "init", str(tmp_path / "network.key")) == []
    assert (tmp_path / "network.key").stat().st_size > 0


nodes = nodes_fixture()


def imported_by_node(nodes: Nodes, data_dir: Path, *args: str) -> set[str]:
    """Top-level packages a node imported by the time it listens (PYTHONPROFILEIMPORTTIME)."""
    node = nodes.start(data_dir, *args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert node.stop() == 0
    names = (line.rsplit("|", 1)[-1].strip() for line in node.lines("stderr") if "|" in line)
    return {name.split(".")[0] for name in names}


def test_a_node_imports_only_the_engines_it_enables(nodes, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [noop]\n")
    noop_only = imported_by_node(nodes, tmp_path / "a", "--policy", str(policy))
    assert noop_only & {"docker", "wasmtime", "boto3", "botocore"} == set()
    assert "aiohttp" in noop_only  # the probe does see what a node does import


def test_a_node_imports_boto3_only_for_s3_inputs(nodes, tmp_path):
    assert {"boto3", "botocore"} & imported_by_node(nodes, tmp_path / "a") == set()
