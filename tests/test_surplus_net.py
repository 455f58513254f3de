"""Surplus results after a real partition (issue 12): jobs run at least once, so a node cut off
from the requester may finish a job the requester ran again elsewhere; after the heal every node
counts the same `count` results (the first in log order) and marks the others surplus.

Node C runs a count-1 job and is cut off (iptables) mid-run. It finishes there; the requester,
no longer hearing from it, declares it lost and reruns the job on B, which joins meanwhile (so
that the first round could only go to C). C's result was written before the NodeLost, so once
it arrives it sorts first: C's result counts, B's is surplus, on every node.
"""

from __future__ import annotations

import time

import pytest

from tests.netfix import host_port, info, network_key, partition, post_json, wait_converged
from tests.procs import nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()
# The default preset declares a silent node lost after about 12 s (3 nodes): C's run, well
# inside that, ends before the NodeLost by every clock on the machine, however loaded.
RUN_MS = 3_000
HOSTS = {"requester": "127.0.0.2", "rerun": "127.0.0.3", "cut": "127.0.0.4"}


def job_of(node, job_id):
    status, view = node.get_json(f"/api/v1/jobs/{job_id}")
    assert status == 200, view
    return view


def by_node(view) -> dict[str, tuple[str, bool]]:
    """{node id: (status, surplus)} of a job's executions."""
    return {e["node"]: (e["status"], e["surplus"]) for e in view["executions"].values()}


@pytest.mark.serial  # iptables rules between loopback addresses other tests' nodes use too
def test_after_a_partition_every_node_counts_the_first_result_and_marks_the_rerun_surplus(
    nodes, tmp_path
):
    common = ("--network-key", str(network_key(tmp_path)), "--preset", "default")

    def start(name, *args):
        return nodes.start(tmp_path / name, *common, *args, listen=f"{HOSTS[name]}:0")

    requester = start("requester", "--roles", "requester")
    seed = ("--peers", host_port(requester))
    cut = start("cut", *seed)
    wait_converged([requester, cut], {info(n)["id"]: 1 for n in (requester, cut)}, timeout=30)
    spec = {"engine": {"type": "noop", "duration_ms": RUN_MS, "stdout": "hi"}, "timeout_s": 60}
    status, body = post_json(requester.url + "/api/v1/jobs", spec)
    assert status == 201, body
    job_id, cut_id = body["job_id"], info(cut)["id"]
    wait_for(
        lambda: by_node(job_of(requester, job_id)).get(cut_id, ("",))[0] == "running",
        20,
        "C to run the job",
    )
    started = time.monotonic()
    with partition([HOSTS["requester"], HOSTS["rerun"]], [HOSTS["cut"]]):
        rerun = start("rerun", *seed)
        rerun_id = info(rerun)["id"]
        wait_for(
            lambda: by_node(job_of(cut, job_id))[cut_id] == ("completed", False),
            20,
            "C to finish the job, cut off",
        )
        assert time.monotonic() - started < 10  # before the requester could declare it lost
        view = wait_for(
            lambda: (v := job_of(requester, job_id))["status"] == "completed" and v,
            40,
            "the requester to rerun the job on B",
        )
        assert by_node(view) == {cut_id: ("lost", False), rerun_id: ("completed", False)}
    everyone = [requester, rerun, cut]
    wait_converged(everyone, timeout=30)
    expected = {cut_id: ("completed", False), rerun_id: ("completed", True)}
    for node in everyone:
        view = job_of(node, job_id)
        assert by_node(view) == expected, node.url
        assert view["status"] == "completed"
    described = run_edgebac("job", "describe", job_id, "--api", cut.url)
    assert described.returncode == 0, described.stderr
    (surplus,) = [line for line in described.stdout.splitlines() if "surplus" in line]
    assert surplus.strip().startswith(f"{job_id}-1-"), described.stdout  # B's, attempt 1
    assert rerun_id[:12] in surplus
    print(f"partition to heal and agreement in {time.monotonic() - started:.1f} s")
