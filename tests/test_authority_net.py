"""Event authority against real nodes (#13): a member that lies gets nothing counted.

Three honest node processes share a network key; a fourth identity holds the key too and is a
member (its first event announces both roles, with no labels and huge resources). It pushes
sealed gossip straight to every node, as a compromised edge device could, and tries each
attack found on the real network: hijacking a running and a completed job, bidding on a job
no honest node could take and publishing a forged result for it, joining an ops job's results,
and naming paths as execution ids. Every node must keep the jobs as their requester made them,
count nothing forged, touch no path outside its folders, and list the attacker's events as
evidence (`GET /api/v1/node`, `edgebac log verify`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc, HybridClock
from edgebac.eventlog.encoding import Event, seal
from edgebac.eventlog.signed import SUBMIT, job_id_for, sign_request
from edgebac.scheduler import ids
from tests.netfix import (
    host_port,
    info,
    network_key,
    peer_envelope,
    post_json,
    sealed_post,
    wait_converged,
)
from tests.procs import nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()
HUGE = {"cpu_millis": 10**9, "memory_bytes": 1 << 60, "disk_bytes": 1 << 60, "gpu": 1000}


class Liar:
    """A member gone bad: its own key, the network key, and a chain it signs itself."""

    def __init__(self, key_path: Path) -> None:
        self.key = SigningKey.generate()
        self.id = bytes(self.key.verify_key)
        self.envelope = peer_envelope(key_path, self.id)
        self.clock = HybridClock(60_000)
        self.chain: list[Event] = []

    def write(self, type_: str, body: dict[str, Any], hlc: Hlc | None = None) -> Event:
        prev = self.chain[-1] if self.chain else None
        if hlc is None or (prev is not None and hlc <= prev.hlc):
            hlc = self.clock.now()
        event = seal(self.key, len(self.chain) + 1, prev.id if prev else None, hlc, type_, body)
        self.chain.append(event)
        return event

    def push(self, nodes: list, events: list[Event]) -> None:
        body = self.envelope.seal({"t": "push", "events": [e.raw for e in events], "relay": True})
        for node in nodes:
            status, answer = sealed_post(node.url, body)
            assert status == 200, answer


def submit(node, spec: dict[str, Any]) -> str:
    status, body = post_json(node.url + "/api/v1/jobs", spec)
    assert status == 201, body
    return body["job_id"]


def view(node, job_id: str) -> dict[str, Any]:
    status, body = node.get_json(f"/api/v1/jobs/{job_id}")
    assert status == 200, body
    return body


def wait_status(node, job_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(
        lambda: (v := view(node, job_id))["status"] == status and v, timeout, f"{job_id} {status}"
    )


def created_hlc(node, job_id: str) -> Hlc:
    return Hlc.unpack(view(node, job_id)["created_hlc"])


def start_honest(nodes, tmp_path, *first_args: str) -> tuple[list, Liar]:
    """Three honest nodes (the first with `first_args` too) and an announced liar."""
    key = network_key(tmp_path)
    common = ("--network-key", str(key), "--preset", "fast", "--labels", "zone=factory")
    first = nodes.start(tmp_path / "n0", *common, *first_args, listen="127.0.0.2:0")
    others = [
        nodes.start(
            tmp_path / f"n{i}", *common, "--peers", host_port(first), listen=f"127.0.0.{i + 2}:0"
        )
        for i in (1, 2)
    ]
    honest = [first, *others]
    wait_converged(honest, {info(n)["id"]: 1 for n in honest})
    liar = Liar(key)
    announce = {
        "addresses": ["127.0.0.9:7700"],
        "roles": ["requester", "compute"],
        "labels": {},
        "resources": HUGE,
        "executors": ["docker", "wasm", "noop"],
    }
    liar.push(honest, [liar.write("NodeAnnounced", announce, Hlc(liar.clock.now().ms - 60_000))])
    return honest, liar


@pytest.fixture
def network(nodes, tmp_path):
    return start_honest(nodes, tmp_path)


def test_a_lying_member_takes_over_nothing(network, tmp_path):
    honest, liar = network
    requester = honest[0]
    done = submit(requester, {"engine": {"type": "noop", "stdout": "real"}})
    running = submit(requester, {"engine": {"type": "noop", "duration_ms": 60_000}})
    secure = submit(requester, {"engine": {"type": "noop"}, "constraints": ["zone=secure"]})
    ops = submit(requester, {"engine": {"type": "noop"}, "type": "ops"})
    wait_status(requester, done, "completed")
    wait_status(requester, running, "running")
    wait_status(requester, ops, "completed")
    wait_for(lambda: view(requester, secure)["status"] == "pending", 30, "every node to decline")
    before = {job_id: view(requester, job_id) for job_id in (done, running, ops)}

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    honest_node = bytes.fromhex(info(honest[1])["public_key"])
    forged: list[Event] = []
    for job_id in (done, running):  # hijack: same id, dated just before, the liar's spec
        early = Hlc(created_hlc(requester, job_id).ms - 1)
        forged.append(
            liar.write(
                "JobCreated",
                {
                    "job_id": job_id,
                    "spec": {"engine": {"type": "noop", "stdout": "MINE"}},
                    "nonce": "x",
                    "vouched": "liar",
                },
                early,
            )
        )
    mine = ids.execution_id(secure, 0, liar.id)
    ops_mine = ids.execution_id(ops, 0, liar.id)
    forged += [
        liar.write("BidOffered", {"job_id": secure, "attempt": 0, "free": HUGE}),
        liar.write(
            "BidAccepted", {"job_id": secure, "node": liar.id, "execution_id": mine, "attempt": 0}
        ),
        liar.write(
            "ResultPublished",
            {"job_id": secure, "execution_id": mine, "exit_code": 0, "reference": "FORGED RESULT"},
        ),
        liar.write("JobCompleted", {"job_id": secure}),
        liar.write(
            "ResultPublished",
            {"job_id": ops, "execution_id": ops_mine, "exit_code": 0, "reference": "FORGED RESULT"},
        ),
        liar.write("JobCanceled", {"job_id": running, "reason": "mine now"}),
    ]
    for path in (str(victim), f"../../../{victim.name}", "../victim"):
        body = {"job_id": running, "node": honest_node, "execution_id": path, "attempt": 0}
        forged.append(liar.write("BidAccepted", body))
    liar.push(honest, forged)
    wait_converged(honest)

    for node in honest:
        for job_id, was in before.items():
            now = view(node, job_id)
            assert now["requester"] == was["requester"] == info(requester)["public_key"]
            assert now["spec"] == was["spec"]
            assert now["status"] == was["status"]
            assert set(now["executions"]) == set(was["executions"])
            assert all(e["reference"] != "FORGED RESULT" for e in now["executions"].values())
        secured = view(node, secure)
        assert secured["status"] == "pending"
        assert secured["executions"] == {}
        evidence = info(node)["evidence"]
        assert set(evidence) == {liar.id.hex()}  # nothing honest is evidence
        assert sum(evidence[liar.id.hex()].values()) == len(forged)
    assert (victim / "precious").read_text() == "keep me"

    status, _ = post_json(requester.url + f"/api/v1/jobs/{running}/cancel", {})
    assert status == 200
    wait_status(requester, running, "canceled")
    requester_dir = tmp_path / "n0"
    result = run_edgebac("log", "verify", "--data-dir", requester_dir, "--output", "json")
    assert result.returncode == 0, result.stderr
    assert liar.id.hex() in result.stdout


def test_a_lying_requester_cannot_name_paths_as_execution_ids(network, tmp_path):
    """Its own job counts (it announced the requester role), honest nodes bid on it; but an
    acceptance naming a path instead of the execution id its bid derives counts for nothing."""
    honest, liar = network
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    spec = {"engine": {"type": "noop", "duration_ms": 0}, "timeout_s": 600}
    job_id = job_id_for(liar.id, "liar", spec, "n1")
    created = {"job_id": job_id, "spec": spec, "nonce": "n1", "vouched": "liar"}
    liar.push(honest, [liar.write("JobCreated", created)])
    keys = {bytes.fromhex(info(node)["public_key"]): i for i, node in enumerate(honest)}

    def an_honest_bid() -> bytes | None:  # once one node bid, the others need not
        bids = view(honest[0], job_id)["bids"].values()
        return next((key for b in bids if (key := bytes.fromhex(b["node"])) in keys), None)

    bidder_key = wait_for(an_honest_bid, 30, "an honest node to bid on the liar's job")
    bidder_dir = tmp_path / f"n{keys[bidder_key]}"  # the network fixture's data dirs
    accepts = [
        liar.write(
            "BidAccepted",
            {"job_id": job_id, "node": bidder_key, "execution_id": path, "attempt": 0},
        )
        for path in (str(victim), "../../../victim", f"{job_id}-0-../../x")
    ]
    liar.push(honest, accepts)
    wait_converged(honest)
    for node in honest:
        assert view(node, job_id)["executions"] == {}
        assert sum(info(node)["evidence"][liar.id.hex()].values()) == len(accepts)
    assert (victim / "precious").read_text() == "keep me"
    results = bidder_dir / "work" / "results"
    assert all(ids.is_execution_id(folder.name) for folder in results.glob("*"))


def test_a_lying_requesters_node_lost_keeps_no_node_out_of_honest_jobs(nodes, tmp_path):
    """The liar announced the requester role and declares every honest compute node lost,
    dated after their bids: that is its word for its own jobs only, and the honest requester
    still runs its job on all three. The honest requester's accept hook holds its decision
    until the lies are in, so the order is certain."""
    go = tmp_path / "go"
    hook = tmp_path / "hold.py"
    hook.write_text(
        "import pathlib, sys, time\n"
        f"go = pathlib.Path({str(go)!r})\n"
        "end = time.monotonic() + 9\n"
        "while not go.exists() and time.monotonic() < end:\n"
        "    time.sleep(0.02)\n"
        "sys.exit(0 if go.exists() else 1)\n"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"accept_hook: {{exec: '{sys.executable} {hook}'}}\n")
    honest, liar = start_honest(nodes, tmp_path, "--policy", str(policy))
    requester = honest[0]
    job_id = submit(requester, {"engine": {"type": "noop"}, "count": 3, "timeout_s": 120})
    bids = wait_for(lambda: len(b := view(requester, job_id)["bids"]) == 3 and b, 30, "three bids")
    after = Hlc.unpack(max(b["hlc"] for b in bids.values()) + (1 << 16))
    lies = [
        liar.write("NodeLost", {"node": bytes.fromhex(info(n)["public_key"]), "reason": "liar",
                                "job_ids": []}, after)
        for n in honest
    ]  # fmt: skip
    liar.push(honest, lies)
    wait_converged(honest)
    go.touch()
    done = wait_status(requester, job_id, "completed")
    ran_on = {e["node"] for e in done["executions"].values()}
    assert ran_on == {info(n)["public_key"] for n in honest}
    assert done["rejected"] == {}


def test_compute_nodes_decline_a_job_whose_client_signature_is_forged(network):
    """The liar, an announced requester, carries a client's key into JobCreated with a
    signature that is not that client's of this request: the creation counts (its id is the
    content's), but every honest compute node declines to run it ("bad client signature").
    The same client's request, really signed for the liar, gets their bids."""
    honest, liar = network
    client = SigningKey.generate()
    key = bytes(client.verify_key)
    signed = {"engine": {"type": "noop"}, "timeout_s": 600}
    forged_spec = {"engine": {"type": "noop", "stdout": "not what was signed"}, "timeout_s": 600}
    sig_of = {n: sign_request(client, SUBMIT, liar.id, {"spec": signed, "nonce": n}) for n in "ab"}
    elsewhere = SigningKey.generate().verify_key  # signed for another requester: replayed here
    replayed = sign_request(client, SUBMIT, bytes(elsewhere), {"spec": signed, "nonce": "c"})
    requests = {
        "tampered spec": (forged_spec, "a", sig_of["a"]),
        "tampered signature": (signed, "b", bytes([sig_of["b"][0] ^ 1]) + sig_of["b"][1:]),
        "another requester's": (signed, "c", replayed),
        "genuine": (
            signed,
            "d",
            sign_request(client, SUBMIT, liar.id, {"spec": signed, "nonce": "d"}),
        ),
    }
    job_ids = {}
    for what, (spec, nonce, sig) in requests.items():
        job_id = job_ids[what] = job_id_for(liar.id, key, spec, nonce)
        body = {"job_id": job_id, "spec": spec, "nonce": nonce, "client": key, "client_sig": sig}
        liar.push(honest, [liar.write("JobCreated", body)])
    compute_ids = {info(n)["public_key"] for n in honest}

    def answered(job_id: str, everyone: bool) -> dict[str, Any] | None:
        shown = view(honest[0], job_id)
        bids = {b["node"] for b in shown["bids"].values()} & compute_ids
        declines = {d["node"] for d in shown["declines"].values()}
        if not everyone:  # one honest bid covers the job: the others hold back
            return shown if bids else None
        return shown if compute_ids <= declines | bids else None

    for what, job_id in job_ids.items():
        genuine = what == "genuine"
        shown = wait_for(lambda j=job_id, g=genuine: answered(j, not g), 30, f"answers to {what}")
        if genuine:
            continue
        reasons = {d["node"]: d["reason"] for d in shown["declines"].values()}
        assert {reasons[n] for n in compute_ids} == {"bad client signature"}, (what, shown)
        assert {b["node"] for b in shown["bids"].values()} & compute_ids == set()
        assert shown["executions"] == {}
        assert shown["client"] == key.hex()
