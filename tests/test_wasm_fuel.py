"""A job's fuel budget really stops a wasm module (and is kept apart from unmetered runs)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.netfix import start_network
from tests.procs import nodes_fixture, run_edgebac

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"


def test_fuel_budget_stops_a_looping_module_and_suffices_for_a_short_one(nodes, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"engines": ["wasm"]}))
    (node,) = start_network(nodes, tmp_path, 1, "--policy", str(policy))

    def run(module: str, *flags: str) -> dict:
        ran = run_edgebac(
            "wasm", "run", "--api", node.url, "--wait", "--output", "json", "--retries", "0",
            "--timeout", "30", *flags, str(WASM / module),
        )  # fmt: skip
        return json.loads(ran.stdout)

    looping = run("loop.wasm", "--fuel", "1000000")
    (execution,) = looping["executions"].values()
    assert looping["status"] == "failed"
    assert execution["reason"] == "out of fuel after 1000000 units"
    hello = run("hello.wasm", "--fuel", "50000000")
    assert hello["status"] == "completed", hello
    unmetered = run("hello.wasm")  # the same module, compiled without metering
    assert unmetered["status"] == "completed", unmetered
