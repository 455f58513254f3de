"""A real node lets go of ended jobs but still shows them in full, and a late event about one
reloads it from the log."""

from __future__ import annotations

from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import seal
from edgebac.node.runner import RETENTION
from edgebac.scheduler.projection import Projection
from tests.announce import announced
from tests.netfix import give, post_json
from tests.procs import nodes_fixture, wait_for
from tests.test_jobs_net import job, raw_events, submit, wait_status

nodes = nodes_fixture()
JOBS = RETENTION.ended_max + 8  # the first ones are let go of


def state_hash(node) -> str:
    return node.get_json("/api/v1/node?state_hash=1")[1]["state_hash"]


def test_old_jobs_stay_complete_and_late_events_reload_them(nodes, tmp_path):
    node = nodes.start(tmp_path / "n")
    ids, views = [], {}
    for i in range(JOBS):
        job_id = submit(node, {"engine": {"type": "noop", "stdout": f"out {i}"}})
        views[job_id] = wait_status(node, job_id, {"completed", "failed"})
        ids.append(job_id)
    first = ids[0]
    old = job(node, first)
    assert old["status"] == "completed"
    for key in ("spec", "bids", "executions", "summary", "created_hlc", "ended_hlc"):
        assert old[key] == views[first][key], key
    (execution,) = old["executions"].values()
    assert execution["stdout_head"] == "out 0"
    assert old["events"][0]["type"] == "JobCreated"
    _, listing = node.get_json(f"/api/v1/jobs?limit={JOBS}")
    assert listing["total"] == JOBS
    assert [j["id"] for j in listing["jobs"]] == ids[::-1]
    assert listing["jobs"][-1] == old["summary"]
    status, results = node.get_json(f"/api/v1/jobs/{first}/results")
    assert status == 200
    assert [r["execution_id"] for r in results["results"]] == list(old["executions"])
    assert state_hash(node) == Projection.from_events(raw_events(node)).state_hash()
    # A compute node that never spoke before declines the old job (after its announcement),
    # with a clock from before the job ended: the node must fold the job again from its log.
    key = SigningKey.generate()
    opening = announced(key, Hlc.unpack(old["ended_hlc"] - 2), roles=["compute"])
    before_end = Hlc.unpack(old["ended_hlc"] - 1)
    body = {"job_id": first, "attempt": 0, "reason": "busy", "detail": "late"}
    give(node, [opening, seal(key, 2, opening.id, before_end, "BidDeclined", body)])
    again = job(node, first)
    assert [d["detail"] for d in again["declines"].values()] == ["late"]
    # The runner reloads it in its next step (the projection's hash covers the decline).
    replayed = Projection.from_events(raw_events(node)).state_hash()
    wait_for(lambda: state_hash(node) == replayed, 10, "the job reloaded")
    # Canceling an old job is a no-op, not an error.
    status, body = post_json(f"{node.url}/api/v1/jobs/{first}/cancel", {})
    assert (status, body["canceled"], body["status"]) == (200, False, "completed")
