"""Deadlines hold their length on a real node whatever other nodes' clocks say (issue 12).

A legal event dated ahead of the node's clock (inside the skew tolerance) drags its hybrid
clock forward, so every event it writes afterwards carries an hlc that far ahead. A job's
deadlines must still be measured on the node's own wall clock.
"""

from __future__ import annotations

import time

import pytest
from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc, wall_clock_ms
from tests.announce import announced
from tests.netfix import give, host_port, info, post_json, wait_converged
from tests.procs import nodes_fixture, wait_for

nodes = nodes_fixture()
AHEAD_MS = 240_000  # inside the default preset's tolerance of 5 minutes
TIMEOUT_S = 2


def test_a_future_dated_event_does_not_stretch_a_job_s_timeout(nodes, tmp_path):
    # The default preset: its clock tolerance is what a real network allows (fast's is 5 s).
    node = nodes.start(tmp_path / "a", "--preset", "default")
    key = SigningKey.generate()
    ahead = announced(key, Hlc(wall_clock_ms() + AHEAD_MS))  # a member with a fast clock
    assert len(give(node, [ahead])["accepted"]) == 1
    spec = {"engine": {"type": "noop"}, "timeout_s": TIMEOUT_S, "constraints": ["zone=nowhere"]}
    started = time.monotonic()
    status, body = post_json(node.url + "/api/v1/jobs", spec)
    assert status == 201, body

    def failed():
        _, view = node.get_json(f"/api/v1/jobs/{body['job_id']}")
        return view["status"] == "failed" and view

    view = wait_for(failed, 60, "the job to fail at its timeout")
    took = time.monotonic() - started
    assert view["created_hlc"] >> 16 >= wall_clock_ms() - 60_000 + AHEAD_MS  # dragged ahead
    assert "no node could run it" in view["reason"]
    # Nominal length, plus a tick (0.25 s) or two and the polling of a loaded machine.
    assert TIMEOUT_S - 0.1 <= took <= TIMEOUT_S + 1.5, took


# ----- a node whose own clock is shifted -------------------------------------------------------
# Real processes with EDGEBAC_TEST_CLOCK_OFFSET_MS: a compute node, or the requester, runs
# minutes ahead (inside the tolerance). Each deadline is measured by the test's clock from the
# act that starts it to the event that ends it, and must hold within about a tick: a deadline
# that mixed two nodes' clocks would be off by the whole shift (3 minutes).
SHIFT_MS = 180_000
WINDOW_S = 3
# The default preset's liveness for a network of 3: suspect after 4 pull intervals of silence,
# dead (and so lost) after 3 times that (gossip/config.py, membership.dead_after_ms).
DEAD_AFTER_S = 12.0


def job_of(node, job_id):
    _, view = node.get_json(f"/api/v1/jobs/{job_id}")
    return view


@pytest.fixture(params=["compute", "requester"])
def skewed(request, nodes, tmp_path):
    """A requester-only node, a compute node in zone b and one in zone c; the one named by the
    parameter (the zone-b node for "compute") runs SHIFT_MS ahead."""
    shift = {"EDGEBAC_TEST_CLOCK_OFFSET_MS": str(SHIFT_MS)}

    def env(role):
        return shift if request.param == role else None

    default = ("--preset", "default")  # the 5-minute tolerance: fast's is 5 s
    requester = nodes.start(
        tmp_path / "r", *default, "--roles", "requester", listen="127.0.0.2:0", env=env("requester")
    )
    seed = ("--peers", host_port(requester))
    b, c = (
        nodes.start(
            tmp_path / zone,
            *default,
            *seed,
            "--labels",
            f"zone={zone}",
            listen=f"127.0.0.{host}:0",
            env=env("compute") if zone == "b" else None,
        )
        for zone, host in (("b", 3), ("c", 4))
    )
    everyone = [requester, b, c]
    wait_converged(everyone, {info(n)["id"]: 1 for n in everyone}, timeout=60)
    return requester, b, c


def submit(node, **spec):
    status, body = post_json(node.url + "/api/v1/jobs", {"engine": {"type": "noop"}, **spec})
    assert status == 201, body
    return body["job_id"]


def test_a_bid_window_holds_its_length_with_a_shifted_clock(skewed):
    requester, b, c = skewed
    assert c.kill() != 0  # eligible (announced, not yet lost) but silent: the round must wait
    started = time.monotonic()
    job_id = submit(
        requester,
        count=2,
        constraints=["zone in (b, c)"],
        bid_window_ms=WINDOW_S * 1000,
        timeout_s=60,
    )
    view = wait_for(
        lambda: (view := job_of(requester, job_id))["executions"] and view,
        60,
        "the bid window to close",
    )
    took = time.monotonic() - started
    assert [e["node"] for e in view["executions"].values()] == [info(b)["id"]]
    assert WINDOW_S - 0.1 <= took <= WINDOW_S + 1.5, took


def test_an_execution_timeout_holds_its_length_with_a_shifted_clock(skewed):
    requester, b, _ = skewed
    started = time.monotonic()
    job_id = submit(
        requester,
        engine={"type": "noop", "duration_ms": 60_000},
        constraints=["zone=b"],
        timeout_s=TIMEOUT_S,
    )

    def timed_out():
        failed = [e for e in job_of(requester, job_id)["executions"].values() if e["reason"]]
        return failed and failed[0]

    execution = wait_for(timed_out, 60, "the execution to time out")
    took = time.monotonic() - started
    assert execution["node"] == info(b)["id"]
    assert execution["reason"] == f"timed out after {TIMEOUT_S} s", execution
    # The timeout plus a round of bidding and the result's trip back, on a loaded machine.
    assert TIMEOUT_S - 0.1 <= took <= TIMEOUT_S + 2.0, took


def test_node_lost_detection_holds_its_length_with_a_shifted_clock(skewed):
    requester, b, _ = skewed
    job_id = submit(
        requester,
        engine={"type": "noop", "duration_ms": 60_000},
        constraints=["zone=b"],
        timeout_s=120,
    )

    def running():
        return any(
            e["status"] == "running" for e in job_of(requester, job_id)["executions"].values()
        )

    wait_for(running, 30, "the execution to start")
    assert b.kill() != 0
    killed = time.monotonic()

    def lost():
        statuses = [e["status"] for e in job_of(requester, job_id)["executions"].values()]
        return "lost" in statuses

    wait_for(lost, 60, "the requester to declare the node lost")
    took = time.monotonic() - killed
    # Its last heartbeat reached the requester up to a pull interval (1 s) before the kill.
    assert DEAD_AFTER_S - 1.5 <= took <= DEAD_AFTER_S + 2.5, took
