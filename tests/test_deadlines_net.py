"""Deadlines hold their length on a real node whatever other nodes' clocks say (issue 12).

A legal event dated ahead of the node's clock (inside the skew tolerance) drags its hybrid
clock forward, so every event it writes afterwards carries an hlc that far ahead. A job's
deadlines must still be measured on the node's own wall clock.
"""

from __future__ import annotations

import time

from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc, wall_clock_ms
from tests.announce import announced
from tests.netfix import give, post_json
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
