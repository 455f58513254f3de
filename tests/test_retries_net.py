"""Retries across real node processes on loopback: a retry round lets every node bid, and the
nodes that have not failed the job win it; a failure that would repeat anywhere is not retried
(issue 12)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from tests.netfix import info, post_json, start_network, wait_converged
from tests.procs import nodes_fixture, wait_for

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
# A long bid window: a round must close because every eligible node answered, not because the
# window ran out (under load, a window as short as the fast preset's could end first).
WINDOW_S = 10
ALWAYS_FAILS = {
    "engine": {"type": "noop", "exit_code": 1},
    "retries": 2,
    "timeout_s": 60,
    "bid_window_ms": WINDOW_S * 1000,
}


def run_to_the_end(node, spec):
    status, body = post_json(node.url + "/api/v1/jobs", spec)
    assert status == 201, body

    def ended():
        _, view = node.get_json(f"/api/v1/jobs/{body['job_id']}")
        return view["status"] in ("completed", "failed", "canceled") and view

    return wait_for(ended, 60, "the job to end")


def attempts(view):
    """(attempt, node, status) of each execution, in attempt order."""
    executions = sorted(view["executions"].values(), key=lambda e: e["attempt"])
    return [(e["attempt"], e["node"], e["status"]) for e in executions]


def test_three_attempts_of_a_failing_job_run_on_three_distinct_nodes(nodes, tmp_path):
    network = start_network(nodes, tmp_path, 3)
    wait_converged(network, {info(n)["id"]: 1 for n in network}, timeout=60)
    started = time.monotonic()
    view = run_to_the_end(network[0], ALWAYS_FAILS)
    assert time.monotonic() - started < WINDOW_S  # no round waited for its window to end
    assert view["status"] == "failed"
    assert view["reason"] == "retry budget spent: 3 executions failed"
    ran = attempts(view)
    assert [(a, s) for a, _, s in ran] == [(0, "failed"), (1, "failed"), (2, "failed")]
    assert sorted(n for _, n, _ in ran) == sorted(info(n)["id"] for n in network)


def test_with_one_node_the_retries_run_there(nodes, tmp_path):
    (node,) = start_network(nodes, tmp_path, 1)
    started = time.monotonic()
    view = run_to_the_end(node, ALWAYS_FAILS)
    assert time.monotonic() - started < WINDOW_S
    assert view["status"] == "failed"
    assert attempts(view) == [(a, info(node)["id"], "failed") for a in range(3)]


def wasm(module: bytes, **extra):
    inline = "inline:base64:" + base64.b64encode(module).decode()
    return {"engine": {"type": "wasm", "module": inline, **extra}, "retries": 2, "timeout_s": 60}


def test_failures_that_would_repeat_on_any_node_are_not_retried(nodes, tmp_path):
    network = start_network(nodes, tmp_path, 3)
    wait_converged(network, {info(n)["id"]: 1 for n in network}, timeout=60)
    cases = {
        "invalid module": (wasm(b"\0asm\x01\0\0\0 not a module"), "not a valid wasm module"),
        "fuel of the spec": (
            wasm((WASM / "loop.wasm").read_bytes(), fuel=1_000_000),
            "out of fuel after 1000000 units",
        ),
    }
    for name, (spec, why) in cases.items():
        view = run_to_the_end(network[0], spec)
        assert view["status"] == "failed", (name, view)
        assert view["reason"].startswith(f"not retried: {why}"), (name, view["reason"])
        assert view["reason"].endswith("(it would fail on any node)"), (name, view["reason"])
        assert len(attempts(view)) == 1, (name, attempts(view))


def test_a_job_waiting_for_more_nodes_says_how_many_it_needs_and_how_many_bid(nodes, tmp_path):
    network = start_network(nodes, tmp_path, 2)
    wait_converged(network, {info(n)["id"]: 1 for n in network}, timeout=60)
    spec = {"engine": {"type": "noop"}, "count": 3, "timeout_s": 60}
    status, body = post_json(network[0].url + "/api/v1/jobs", spec)
    assert status == 201, body

    def waiting():
        _, view = network[0].get_json(f"/api/v1/jobs/{body['job_id']}")
        ran_both = view["summary"]["executions"] == {"completed": 2}
        return ran_both and view["status"] == "bidding" and view["pending_reason"]

    # Both nodes ran it; it waits for a third (it said `no node declined`).
    assert wait_for(waiting, 30, "both nodes to run it") == "needs 3 nodes, 2 bid"
