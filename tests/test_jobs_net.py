"""The job lifecycle across real node processes on loopback, with the noop engine."""

from __future__ import annotations

import json
import random
import time

import pytest

from edgebac.eventlog.encoding import decode
from edgebac.scheduler.projection import Projection
from tests.netfix import info, network_key, post_json, start_network, wait_converged
from tests.procs import nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()


def noop(**spec):
    engine = {"type": "noop", "stdout": "hi", **spec.pop("engine", {})}
    return {"engine": engine, **spec}


def submit(node, spec):
    status, body = post_json(node.url + "/api/v1/jobs", spec)
    assert status == 201, body
    return body["job_id"]


def job(node, job_id):
    status, body = node.get_json(f"/api/v1/jobs/{job_id}")
    assert status == 200, body
    return body


def wait_status(node, job_id, statuses, timeout=20.0):
    return wait_for(
        lambda: (view := job(node, job_id))["status"] in statuses and view, timeout, f"{statuses}"
    )


@pytest.fixture
def network(nodes, tmp_path):
    """One requester-only node, then three compute nodes (zone a, a, b)."""
    key = network_key(tmp_path)
    requester = start_network(nodes, tmp_path, 1, "--network-key", str(key), "--roles", "requester")
    seed = requester[0].url.removeprefix("http://")
    computes = []
    for index, zone in enumerate("aab"):
        computes.append(
            nodes.start(
                tmp_path / f"c{index}",
                "--network-key",
                str(key),
                "--peers",
                seed,
                "--labels",
                f"zone={zone}",
                listen=f"127.0.0.{index + 3}:0",
            )
        )
    everyone = requester + computes
    wait_converged(everyone, {info(n)["id"]: 1 for n in everyone})
    return requester[0], computes


def nodes_of(view):
    return sorted(e["node"] for e in view["executions"].values() if e["status"] == "completed")


def raw_events(node):
    events, after = [], 0
    while True:
        _, page = node.get_json(f"/api/v1/events?after={after}&limit=1000&raw=1")
        events += [decode(bytes.fromhex(e["raw"])) for e in page["events"]]
        if not page["more"]:
            return events
        after = page["next"]


def replayed_hash(events, seed):
    """Fold the events from scratch in a random order that keeps each author's own order."""
    chains = {}
    for event in sorted(events, key=lambda e: e.seq):
        chains.setdefault(event.author, []).append(event)
    rng, order = random.Random(seed), []
    while chains:
        author = rng.choice(sorted(chains))
        order.append(chains[author].pop(0))
        if not chains[author]:
            del chains[author]
    return Projection.from_events(order).state_hash()


def test_count_three_runs_on_three_distinct_nodes(network):
    requester, computes = network
    job_id = submit(requester, noop(count=3))
    view = wait_status(requester, job_id, {"completed", "failed"})
    assert view["status"] == "completed"
    assert nodes_of(view) == sorted(info(c)["id"] for c in computes)
    assert all(e["stdout_head"] == "hi" for e in view["executions"].values())
    # Every node projects the same state, and replaying its log from scratch gives it again.
    everyone = [requester, *computes]
    wait_converged(everyone)
    hashes = [n.get_json("/api/v1/node?state_hash=1")[1]["state_hash"] for n in everyone]
    assert len(set(hashes)) == 1
    for seed, node in enumerate(everyone):
        assert replayed_hash(raw_events(node), seed) == hashes[0]


def test_ops_job_runs_on_every_matching_node_and_constraints_hold(network):
    requester, computes = network
    zone_a = sorted(info(c)["id"] for c in computes[:2])
    ops = wait_status(
        requester,
        submit(requester, noop(type="ops", constraints=["zone=a"])),
        {"completed", "failed"},
    )
    assert (ops["status"], nodes_of(ops)) == ("completed", zone_a)
    only_b = wait_status(
        requester, submit(requester, noop(constraints=["zone in (b)"])), {"completed"}
    )
    assert nodes_of(only_b) == [info(computes[2])["id"]]


def test_job_no_node_can_take_stays_pending_with_reasons_then_fails(network):
    requester, _ = network
    job_id = submit(requester, noop(resources={"memory": "64Ti"}, timeout_s=3))
    wait_for(
        lambda: job(requester, job_id)["pending_reason"] == "3 nodes: 3 lack memory",
        10,
        "every node's decline",
    )
    assert job(requester, job_id)["status"] == "pending"
    described = run_edgebac("job", "describe", job_id, "--api", requester.url)
    assert "3 lack memory" in described.stdout
    failed = wait_status(requester, job_id, {"failed"}, timeout=15)
    assert "lack memory" in failed["reason"]


def test_cancel_stops_a_running_job(network):
    requester, _ = network
    job_id = submit(requester, noop(engine={"duration_ms": 60_000}, timeout_s=120))
    wait_for(
        lambda: any(
            e["status"] == "running" for e in job(requester, job_id)["executions"].values()
        ),
        15,
        "the execution to start",
    )
    result = run_edgebac("job", "cancel", job_id, "--api", requester.url, "--output", "json")
    assert json.loads(result.stdout)["canceled"] is True
    view = wait_status(requester, job_id, {"canceled"})
    assert [e["status"] for e in view["executions"].values()] == ["canceled"]


def test_killed_compute_node_has_its_execution_rescheduled(network):
    requester, computes = network
    job_id = submit(requester, noop(engine={"duration_ms": 3000}, timeout_s=60))
    first = wait_for(
        lambda: [
            e for e in job(requester, job_id)["executions"].values() if e["status"] == "running"
        ],
        15,
        "the execution to start",
    )[0]
    victim = next(c for c in computes if info(c)["id"] == first["node"])
    victim.kill()
    view = wait_status(requester, job_id, {"completed", "failed"}, timeout=40)
    assert view["status"] == "completed"
    statuses = {e["node"]: e["status"] for e in view["executions"].values()}
    assert statuses[first["node"]] == "lost"
    assert sorted(statuses.values()) == ["completed", "lost"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"engine": {"type": "noop"}, "count": "three"}, "count"),
        ({"engine": {"type": "teleport"}}, "engine.type"),
        ({"engine": {"type": "noop"}, "count": -1}, "count"),
        ({"engine": {"type": "noop"}, "resources": {"memory": "12Q"}}, "resources.memory"),
        ({"engine": {"type": "noop"}, "constraints": ["zone ~ a"]}, "constraints[0]"),
        ({"engine": {"type": "docker"}}, "engine.image"),
        ("not a map", "spec"),
    ],
)
def test_malformed_specs_are_refused_with_the_field_and_nothing_appended(
    nodes, tmp_path, spec, field
):
    (node,) = start_network(nodes, tmp_path, 1)
    before = info(node)["events"]
    status, body = post_json(node.url + "/api/v1/jobs", spec)
    assert status == 400
    assert body["error"]["code"] == "bad_spec"
    assert (
        field in [f["field"] for f in body["error"]["fields"]] or field in body["error"]["message"]
    )
    assert info(node)["events"] == before
    assert node.get_json("/healthz")[0] == 200


def test_cli_run_wait_list_describe(nodes, tmp_path):
    (node,) = start_network(nodes, tmp_path, 1)
    spec = tmp_path / "job.yaml"
    spec.write_text("engine:\n  type: noop\n  stdout: from yaml\n")
    ran = run_edgebac("job", "run", spec, "--wait", "--api", node.url, "--output", "json")
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert view["status"] == "completed"
    listed = json.loads(run_edgebac("job", "list", "--api", node.url, "--output", "json").stdout)
    assert [j["id"] for j in listed["jobs"]] == [view["id"]]
    failing = tmp_path / "fail.json"
    failing.write_text(json.dumps(noop(engine={"exit_code": 3}, retries=0)))
    ran = run_edgebac("job", "run", failing, "--wait", "--api", node.url)
    assert ran.returncode == 1
    assert "failed" in ran.stderr
    bad = run_edgebac("job", "run", spec, "--concurrency", "0", "--api", node.url)
    assert bad.returncode == 2
    missing = run_edgebac("job", "describe", "j-nope", "--api", node.url)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no job 'j-nope'")
    assert "Traceback" not in missing.stderr
    started = time.monotonic()
    down = run_edgebac("job", "list", "--api", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert "cannot reach the node API" in down.stderr
    assert time.monotonic() - started < 10


def test_signed_submissions_over_http(nodes, tmp_path):
    """A retried signed request answers its job (one JobCreated); a bad signature or a spec
    not in canonical form is refused in the error shape, nothing appended, node still up."""
    from nacl.signing import SigningKey

    from edgebac.eventlog.signed import SUBMIT, sign_request
    from edgebac.scheduler.spec import parse_spec

    (node,) = start_network(nodes, tmp_path, 1)
    requester = bytes.fromhex(info(node)["public_key"])
    key = SigningKey.generate()
    spec = parse_spec(noop()).to_dict()
    sig = sign_request(key, SUBMIT, requester, {"spec": spec, "nonce": "retry-me"})
    body = {"spec": spec, "nonce": "retry-me", "client": bytes(key.verify_key).hex()}
    body["signature"] = sig.hex()
    first = post_json(node.url + "/api/v1/jobs", body)
    again = post_json(node.url + "/api/v1/jobs", body)
    assert first == (201, {"job_id": first[1]["job_id"], "created": True})
    assert again == (200, {"job_id": first[1]["job_id"], "created": False})
    done = wait_status(node, first[1]["job_id"], {"completed"})
    assert sum(e["type"] == "JobCreated" for e in done["events"]) == 1
    assert done["client"] == bytes(key.verify_key).hex()
    before = info(node)["events"]
    status, refused = post_json(node.url + "/api/v1/jobs", {**body, "nonce": "not-signed"})
    assert status == 401
    assert refused["error"]["code"] == "bad_client_signature"
    assert "signature" in refused["error"]["message"]
    raw = sign_request(key, SUBMIT, requester, {"spec": noop(), "nonce": "raw"})
    as_written = {**body, "spec": noop(), "nonce": "raw", "signature": raw.hex()}
    status, refused = post_json(node.url + "/api/v1/jobs", as_written)
    assert status == 400
    assert "canonical form" in refused["error"]["message"]
    assert info(node)["events"] == before
    assert node.get_json("/healthz")[0] == 200
