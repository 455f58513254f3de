"""Nodes whose clocks are off: within the tolerance they take part, beyond it both sides say so,
and once the clock is fixed the node is back within a sync interval or two.

Clocks are shifted with EDGEBAC_TEST_CLOCK_OFFSET_MS (test-only: it shifts the one wall clock a
node reads, for its log, envelope, membership and runner).
"""

from __future__ import annotations

import re

import pytest

from tests.netfix import give, host_port, info, new_author_events, vv, wait_converged
from tests.procs import nodes_fixture, wait_for

nodes = nodes_fixture()


def shifted(offset_ms: int) -> dict[str, str]:
    return {"EDGEBAC_TEST_CLOCK_OFFSET_MS": str(offset_ms)}


def warnings(node, pattern: str) -> list[str]:
    return [line for line in node.lines("stderr") if re.search(pattern, line)]


def test_clocks_a_few_minutes_off_take_part_on_the_default_preset(nodes, tmp_path):
    """The log tolerates 5 minutes of skew; the envelope cut such nodes off as replays."""
    default = ("--preset", "default")  # after the harness's --preset fast: the last one counts
    a = nodes.start(tmp_path / "a", *default, listen="127.0.0.2:0")
    seed = ("--peers", host_port(a))
    behind = nodes.start(
        tmp_path / "b", *seed, *default, listen="127.0.0.3:0", env=shifted(-120_000)
    )
    ahead = nodes.start(tmp_path / "c", *seed, *default, listen="127.0.0.4:0", env=shifted(120_000))
    for node in (a, behind, ahead):
        give(node, new_author_events("hello"))
    wait_converged([a, behind, ahead], timeout=60)
    assert len(vv(a)) == 6  # three nodes and three clients
    for node in (a, behind, ahead):
        # Gossip refusals and clock warnings, not the engines' ("Connection refused" from a
        # Docker engine that is not up yet).
        assert not warnings(node, r"clock|refuses|refused (gossip|events|body)"), node.stderr


@pytest.mark.parametrize(
    ("offset_ms", "a_says", "b_says"),
    [
        (
            20_000,
            r"body is dated 2\d\.\d s ahead of this node's clock \(max skew 5 s\)",
            "clock_skew",
        ),
        (-60_000, r"body is 6\d\.\d s old: the sender's clock is behind", "clock_skew"),
    ],
)
def test_beyond_the_tolerance_both_say_so_and_a_fixed_clock_rejoins(
    nodes, tmp_path, offset_ms, a_says, b_says
):
    a = nodes.start(tmp_path / "a", listen="127.0.0.2:0")
    give(a, new_author_events("before"))
    seed = ("--peers", host_port(a))
    b = nodes.start(tmp_path / "b", *seed, listen="127.0.0.3:0", env=shifted(offset_ms))
    a_line = rf"^warning: refused gossip from 127\.0\.0\.3: {a_says}"
    wait_for(lambda: warnings(a, a_line), 30, "the warning of the node with the right clock")
    b_line = rf"^warning: {re.escape(host_port(a))} refuses our gossip \({b_says}\): {a_says}"
    wait_for(lambda: warnings(b, b_line), 30, "the warning of the node with the wrong clock")
    a_id = info(a)["id"]
    assert a_id not in vv(b)
    assert b.stop() == 0
    b = nodes.start(tmp_path / "b", *seed, listen="127.0.0.3:0")  # the clock is fixed
    # Within a few sync intervals (0.2 s; generous for a loaded machine) it takes part again.
    wait_for(lambda: vv(b).get(a_id) == vv(a)[a_id], 5, "the fixed node to hold a's events")
    b_id = info(b)["id"]

    def b_alive_at_a() -> bool:
        _, listed = a.get_json("/api/v1/nodes")
        return {row["id"]: row["liveness"] for row in listed["nodes"]}.get(b_id) == "alive"

    wait_for(b_alive_at_a, 5, "a to see the fixed node alive")
    # Its own events written while its clock ran ahead follow once they are within the skew.
    wait_converged([a, b], timeout=60)
    assert not warnings(a, "Traceback|failed:")
