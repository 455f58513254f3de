"""Compute node decisions: bid or decline with a reason, start and stop executions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from scheduler_harness import BIG, CLIENT, GIB, World, docker_spec, noop_spec, types

from edgebac.errors import ConfigError
from edgebac.eventlog.signed import SUBMIT, job_id_for, sign_request
from edgebac.node.policy import load_policy
from edgebac.scheduler.compute import (
    LocalFacts,
    NodePolicy,
    awaiting_verdict,
    client_problem,
    client_signed,
    summarize_declines,
    to_start,
    to_stop,
)
from edgebac.scheduler.requester import Verdict

ALPINE = LocalFacts(images=frozenset({"alpine:latest"}))
WASM = {"type": "wasm", "module": "ipfs://Qm" + "a" * 44}


def world(labels: dict[str, str] | None = None, resources: dict[str, int] | None = None) -> World:
    w = World()
    w.announce("req", roles=("requester",))
    w.announce("me", labels=labels, resources=resources)
    return w


def me(w: World) -> bytes:
    return w.actor("me").id


def test_bids_with_free_resources_and_local_data():
    w = world()
    spec = docker_spec(inputs=[{"source": "s3://b/k", "target": "/in"}])
    w.submit("req", "j", spec)
    facts = LocalFacts(images=frozenset({"alpine:latest"}), local_inputs=frozenset({"s3://b/k"}))
    policy = NodePolicy(cost=3)
    assert w.plan_compute("me", policy, facts) == [
        (
            "BidOffered",
            {"job_id": w.jid("j"), "attempt": 0, "local_data": True, "free": BIG, "cost": 3},
        )
    ]
    w.compute_step("me", policy, facts)
    assert w.plan_compute("me", policy, facts) == []  # answered once


@pytest.mark.parametrize(
    ("spec", "policy", "facts", "reason"),
    [
        (docker_spec(), NodePolicy(engines=frozenset({"wasm"})), ALPINE, "engine disabled"),
        (docker_spec(network="full"), NodePolicy(), ALPINE, "network not allowed"),
        (docker_spec(constraints=["zone=north"]), NodePolicy(), ALPINE, "label mismatch"),
        (docker_spec(), NodePolicy(images=("registry.local/*",)), ALPINE, "image not allowed"),
        (docker_spec(), NodePolicy(), LocalFacts(), "image not present"),
        (noop_spec(engine=WASM), NodePolicy(modules=("file://*",)), ALPINE, "module not allowed"),
        (
            noop_spec(inputs=[{"source": "/etc/shadow", "target": "/in"}]),
            NodePolicy(paths=("/srv/data",)),
            ALPINE,
            "input not allowed",
        ),
        (noop_spec(resources={"memory": "32Gi"}), NodePolicy(), ALPINE, "lack memory"),
        (noop_spec(resources={"cpu": "9"}), NodePolicy(), ALPINE, "lack cpu"),
        (noop_spec(resources={"disk": "1Ti"}), NodePolicy(), ALPINE, "lack disk"),
        (noop_spec(resources={"gpu": 1}), NodePolicy(), ALPINE, "lack gpu"),
    ],
)
def test_each_decline_reason(spec, policy, facts, reason):
    w = world(labels={"zone": "south"})
    w.submit("req", "j", spec)
    (planned,) = w.plan_compute("me", policy, facts)
    assert planned[0] == "BidDeclined"
    assert planned[1]["reason"] == reason
    assert planned[1]["detail"]


def test_decline_detail_names_the_amounts():
    w = world()
    w.submit("req", "j", noop_spec(resources={"memory": "32Gi"}))
    (planned,) = w.plan_compute("me")
    assert planned[1]["detail"] == "needs 32Gi memory, 16Gi memory free"


def test_allowed_things_are_bid_on():
    w = world(labels={"zone": "north"})
    policy = NodePolicy(network=True, paths=("/srv/data",), images=("alpine*",))
    w.submit("req", "a", docker_spec(network="full", constraints=["zone=north"]))
    w.submit("req", "b", noop_spec(inputs=[{"source": "/srv/data/x", "target": "/in"}]))
    w.submit("req", "c", noop_spec(engine=WASM))
    assert types(w.plan_compute("me", policy, ALPINE)) == ["BidOffered"] * 3


def test_resources_taken_by_running_executions_and_pending_bids():
    w = world(resources={**BIG, "memory_bytes": 3 * GIB})
    w.announce("other")
    w.submit("req", "j1", noop_spec(resources={"memory": "2Gi"}))
    w.compute_step("me")
    w.submit("req", "j2", noop_spec(resources={"memory": "2Gi"}))
    (planned,) = w.plan_compute("me")
    assert planned[1]["reason"] == "busy"  # my bid on j1 claims 2 of 3 GiB: not for good
    assert planned[1]["detail"].startswith("lack memory now: needs 2")
    w.compute_step("me")
    w.requester_step("req")  # j1 accepted on me
    (execution,) = w.state.jobs[w.jid("j1")].active()
    w.publish("me", execution.id)
    # memory is free again: bid after the decline, never decline twice
    (planned,) = w.plan_compute("me")
    assert planned[0] == "BidOffered"
    assert planned[1]["free"]["memory_bytes"] == 3 * GIB


def test_two_jobs_in_one_call_do_not_share_memory():
    w = world(resources={**BIG, "memory_bytes": 3 * GIB})
    w.submit("req", "j1", noop_spec(resources={"memory": "2Gi"}))
    w.submit("req", "j2", noop_spec(resources={"memory": "2Gi"}))
    assert [b.get("reason") for _, b in w.plan_compute("me")] == [None, "busy"]


def test_new_round_is_answered_again():
    w = world()
    w.submit("req", "j", noop_spec())
    w.compute_step("me")
    w.requester_step("req")
    (execution,) = w.state.jobs[w.jid("j")].active()
    w.fail("me", execution.id)
    w.requester_step("req")
    (planned,) = w.plan_compute("me")
    assert planned[1]["attempt"] == 1


def test_nothing_for_terminal_or_full_jobs_or_without_announcement():
    w = world()
    w.announce("other")
    w.submit("req", "j", noop_spec())
    w.compute_step("other")
    w.requester_step("req")  # filled by other
    assert w.plan_compute("me") == []
    w.cancel("req", w.jid("j"))
    assert w.plan_compute("me") == []
    w.submit("req", "k", noop_spec())
    assert w.plan_compute("stranger") == []


def test_bid_hook_verdict():
    w = world()
    w.submit("req", "j", docker_spec())
    policy = NodePolicy(hook=True)
    assert w.plan_compute("me", policy, ALPINE) == []
    assert awaiting_verdict(w.state, me(w), policy, ALPINE) == [(w.jid("j"), 0)]
    no = LocalFacts(images=ALPINE.images, verdicts={(w.jid("j"), 0): Verdict(False, "busy hours")})
    (planned,) = w.plan_compute("me", policy, no)
    assert (planned[1]["reason"], planned[1]["detail"]) == ("declined by policy", "busy hours")
    yes = LocalFacts(images=ALPINE.images, verdicts={(w.jid("j"), 0): Verdict(True)})
    assert types(w.plan_compute("me", policy, yes)) == ["BidOffered"]


def test_start_and_stop():
    w = world()
    w.submit("req", "j", noop_spec())
    w.compute_step("me")
    w.requester_step("req")
    (execution,) = w.state.jobs[w.jid("j")].active()
    assert to_start(w.state, me(w), LocalFacts()) == [execution]
    running = LocalFacts(running=frozenset({execution.id}))
    assert to_start(w.state, me(w), running) == []
    w.start("me", execution.id)
    assert to_start(w.state, me(w), LocalFacts()) == []
    assert to_stop(w.state, me(w), running) == []
    w.cancel("req", w.jid("j"), "user")
    assert [e.id for e in to_stop(w.state, me(w), running)] == [execution.id]


def test_ops_job_runs_once_per_node():
    w = world()
    w.submit("req", "j", noop_spec(type="ops"))
    w.compute_step("me")
    w.requester_step("req")
    (execution,) = w.state.jobs[w.jid("j")].active()
    w.publish("me", execution.id)
    w.emit("req", "BidsRequested", {"job_id": w.jid("j"), "attempt": 1})
    assert w.plan_compute("me") == []


def test_summarize_declines():
    w = world()
    w.submit("req", "j", noop_spec())
    job = w.state.jobs[w.jid("j")]
    assert summarize_declines(job) == "no node declined"
    for name, reason in [("a", "lack memory"), ("b", "label mismatch"), ("c", "lack memory")]:
        w.announce(name)
        w.emit(name, "BidDeclined", {"job_id": w.jid("j"), "attempt": 0, "reason": reason})
    assert summarize_declines(job) == "3 nodes: 2 lack memory, 1 label mismatch"
    w.emit(
        "a", "BidOffered", {"job_id": w.jid("j"), "attempt": 0, "free": BIG}
    )  # a changed its mind
    assert summarize_declines(job) == "2 nodes: 1 label mismatch, 1 lack memory"


def test_holds_back_where_a_bid_could_only_be_rejected():
    w = World()
    w.announce("req", roles=("requester", "compute"))
    w.announce("me")
    w.submit("req", "j", noop_spec())
    assert w.plan_compute("me") == []  # the requester, a compute node too, answers first
    local = LocalFacts(local_inputs=frozenset({"s3://b/k"}))
    w.submit("req", "k", noop_spec(inputs=[{"source": "s3://b/k", "target": "/in"}]))
    assert types(w.plan_compute("me", NodePolicy(), local)) == ["BidOffered"]  # holds its data
    w.compute_step("req")  # bids on j (and k)
    assert [b for _, b in w.plan_compute("me") if b["job_id"] == w.jid("j")] == []  # slot covered
    w.requester_step("req")  # accepts itself for both
    assert w.plan_compute("me") == []
    w.advance(2_000)
    w.submit("req", "l", noop_spec(count=2))
    w.compute_step("req")
    assert types(w.plan_compute("me")) == ["BidOffered"]  # one slot still open


def test_bids_when_the_requester_declined_or_is_slow():
    w = World()
    w.announce("req", roles=("requester", "compute"), labels={"zone": "south"})
    w.announce("me", labels={"zone": "north"})
    w.submit("req", "j", noop_spec(constraints=["zone=north"]))
    w.submit("req", "k", noop_spec())
    assert w.plan_compute("me") == []
    w.compute_step("req")  # declines j (label), bids on k
    assert [b["job_id"] for _, b in w.plan_compute("me")] == [w.jid("j")]
    w.submit("req", "l", noop_spec())
    w.advance(1_000)  # the requester had its turn: no more holding back for it
    assert [b["job_id"] for _, b in w.plan_compute("me")] == [w.jid("j"), w.jid("l")]


def test_waits_for_the_node_that_holds_a_content_id_input():
    """Locality can only win if the holder's bid is among the first: others give it a moment."""
    w = world()
    w.announce("holder")
    w.submit("req", "first", noop_spec())
    w.compute_step("holder")
    w.requester_step("req")
    (execution,) = w.state.executions.values()
    w.start("holder", execution.id)
    cid = "Qm" + "b" * 44
    body = {
        "job_id": w.jid("first"),
        "execution_id": execution.id,
        "exit_code": 0,
        "reference": cid,
    }
    w.emit("holder", "ResultPublished", body)  # the holder now holds that content
    spec = noop_spec(inputs=[{"source": f"ipfs://{cid}", "target": "/in"}])
    w.submit("req", "j", spec)
    assert w.plan_compute("me") == []  # the holder has not answered yet
    holder_facts = LocalFacts(local_inputs=frozenset({f"ipfs://{cid}"}))
    (bid,) = w.compute_step("holder", NodePolicy(), holder_facts)
    assert bid.body["local_data"] is True
    w.requester_step("req")  # the first usable bid is the holder's: locality wins
    assert [e.node for e in w.state.jobs[w.jid("j")].executions.values()] == [w.actor("holder").id]
    assert w.plan_compute("me") == []  # nothing left to bid for
    w.submit("req", "k", spec)
    assert w.plan_compute("me") == []
    w.advance(1_000)  # a silent holder is waited for a moment only
    assert types(w.plan_compute("me")) == ["BidOffered"]


# ----- who asked: the client signature and the operator's clients ---------------------------

OTHER_CLIENT = SigningKey(b"another-client-key-for-the-tests")


def created(w: World, nonce: str, signed: dict, *, key=CLIENT, signed_for=None, **changes) -> str:
    """A JobCreated by `req` whose id matches its content, signed by `key` for `signed_for`
    (default: `req`), then changed by `changes` (client_sig, spec...) after signing."""
    requester = w.actor("req").id
    client = bytes(key.verify_key)
    fields = {"spec": signed, "nonce": nonce}
    sig = sign_request(key, SUBMIT, signed_for or requester, fields)
    body = {"spec": signed, "nonce": nonce, "client": client, "client_sig": sig, "wall_ms": 0}
    body.update(changes)
    body["job_id"] = job_id_for(
        requester, body.get("client", body.get("vouched")), body["spec"], nonce
    )
    w.emit("req", "JobCreated", body)
    return body["job_id"]


def vouched(w: World, nonce: str, name: str = "unsigned") -> str:
    requester = w.actor("req").id
    spec = noop_spec()
    job_id = job_id_for(requester, name, spec, nonce)
    body = {"job_id": job_id, "spec": spec, "nonce": nonce, "vouched": name, "wall_ms": 0}
    w.emit("req", "JobCreated", body)
    return job_id


def decline_of(w: World, job_id: str, policy: NodePolicy | None = None, facts=ALPINE):
    policy = policy or NodePolicy()
    (planned,) = [p for p in w.plan_compute("me", policy, facts) if p[1]["job_id"] == job_id]
    return planned[0], planned[1].get("reason")


def test_a_job_whose_client_signature_does_not_verify_is_declined():
    w = world()
    good = created(w, "good", noop_spec())
    other_requester = w.actor("elsewhere").id
    replayed = created(w, "replayed", noop_spec(), signed_for=other_requester)
    forged_spec = created(w, "forged", noop_spec(), spec=noop_spec(name="not what was signed"))
    wrong_key = created(w, "wrong", noop_spec(), client=bytes(OTHER_CLIENT.verify_key))
    no_sig = created(w, "nosig", noop_spec(), client_sig=b"")
    assert decline_of(w, good) == ("BidOffered", None)
    for job_id in (replayed, forged_spec, wrong_key, no_sig):
        assert decline_of(w, job_id) == ("BidDeclined", "bad client signature")
    (planned,) = [p for p in w.plan_compute("me") if p[1]["job_id"] == wrong_key]
    assert planned[1]["detail"].startswith("the signature of client ")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["spec", "nonce", "client_sig"]), st.integers(0, 1000))
def test_any_change_to_a_signed_request_fails_the_check(part, where):
    w = world()
    job_id = created(w, "n", noop_spec())
    job = w.state.jobs[job_id]
    assert client_signed(job)
    if part == "spec":
        job.spec_dict = {**job.spec_dict, "name": f"x{where}"}
    elif part == "nonce":
        job.nonce = f"{job.nonce}{where}"
    else:
        sig = bytearray(job.client_sig)
        sig[where % len(sig)] ^= 1 << (where % 8)
        job.client_sig = bytes(sig)
    assert not client_signed(job)


def test_the_cached_verdict_is_what_decides():
    """The shell verifies each job once and passes the verdict in the facts."""
    w = world()
    good = created(w, "good", noop_spec())
    bad = created(w, "bad", noop_spec(), client_sig=b"\0" * 64)
    cached = LocalFacts(images=ALPINE.images, signatures={good: False, bad: True})
    assert decline_of(w, good, facts=cached) == ("BidDeclined", "bad client signature")
    assert decline_of(w, bad, facts=cached) == ("BidOffered", None)


def test_a_node_runs_only_the_clients_its_policy_names():
    w = world()
    mine, theirs = created(w, "a", noop_spec()), created(w, "b", noop_spec(), key=OTHER_CLIENT)
    only_mine = NodePolicy(clients=frozenset({bytes(CLIENT.verify_key).hex()}))
    assert decline_of(w, mine, only_mine) == ("BidOffered", None)
    assert decline_of(w, theirs, only_mine) == ("BidDeclined", "client not allowed")
    assert decline_of(w, theirs) == ("BidOffered", None)  # default: any client


def test_vouched_jobs_follow_the_vouched_and_clients_settings():
    w = world()
    job_id = vouched(w, "v")
    assert decline_of(w, job_id) == ("BidOffered", None)
    assert decline_of(w, job_id, NodePolicy(vouched=False)) == (
        "BidDeclined",
        "vouched jobs not allowed",
    )
    someone = NodePolicy(clients=frozenset({bytes(CLIENT.verify_key).hex()}))
    assert decline_of(w, job_id, someone) == ("BidDeclined", "client not allowed")
    named = NodePolicy(clients=frozenset({"unsigned"}))
    assert decline_of(w, job_id, named) == ("BidOffered", None)
    assert client_problem(w.state.jobs[job_id], NodePolicy(), LocalFacts()) is None


def test_the_bid_hook_is_not_asked_about_jobs_the_client_rules_decline():
    w = world()
    theirs = created(w, "b", noop_spec(), key=OTHER_CLIENT)
    policy = NodePolicy(hook=True, clients=frozenset({bytes(CLIENT.verify_key).hex()}))
    assert awaiting_verdict(w.state, me(w), policy, ALPINE) == []
    assert decline_of(w, theirs, policy) == ("BidDeclined", "client not allowed")


def test_a_job_naming_no_resources_claims_its_engines_limits():
    """A docker job that names no CPU or memory runs with half a core and 512 MiB (the
    executor's limits): the node counts them, so a flood of such jobs cannot all land on it
    at once, within one decision or across them (its bids and executions claim them)."""
    w = world(resources={**BIG, "cpu_millis": 2000})
    for n in range(5):
        w.submit("req", f"j{n}", docker_spec())
    planned = w.plan_compute("me")
    assert [b.get("reason") for _, b in planned] == [None, None, None, None, "busy"]
    assert planned[4][1]["detail"] == "lack cpu now: needs 500m cpu, 0m cpu free"
    w.compute_step("me")
    w.submit("req", "later", docker_spec())
    ((_, body),) = w.plan_compute("me")
    assert body["reason"] == "busy"  # the four bids still claim the two cores
    assert noop_claims() == {"cpu_millis": 0, "memory_bytes": 0, "disk_bytes": 0, "gpu": 0}


def noop_claims() -> dict[str, int]:
    from edgebac.scheduler.spec import parse_spec

    return parse_spec(noop_spec()).claims()


def test_a_token_clients_vouched_name_names_the_jobs_own_requester():
    """The API vouches for a token caller as `token:NAME@<requester id>`: a policy can name it,
    and a name claiming another requester's token client is declined, whatever the policy."""
    w = world()
    req, elsewhere = w.actor("req").id.hex(), w.actor("elsewhere").id.hex()
    ci = vouched(w, "ci", f"token:ci@{req}")
    other_token = vouched(w, "other", f"token:other@{req}")
    claimed = vouched(w, "claimed", f"token:ci@{elsewhere}")  # "req" vouching as elsewhere's ci
    assert decline_of(w, ci) == ("BidOffered", None)
    assert decline_of(w, claimed) == ("BidDeclined", "client not allowed")
    (planned,) = [p for p in w.plan_compute("me") if p[1]["job_id"] == claimed]
    assert "names a requester other than the job's" in planned[1]["detail"]
    only_ci = NodePolicy(clients=frozenset({f"token:ci@{req}"}))
    assert decline_of(w, ci, only_ci) == ("BidOffered", None)
    assert decline_of(w, other_token, only_ci) == ("BidDeclined", "client not allowed")
    elsewheres_ci = NodePolicy(clients=frozenset({f"token:ci@{elsewhere}"}))
    assert decline_of(w, claimed, elsewheres_ci) == ("BidDeclined", "client not allowed")


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ("A" * 64, "a" * 64),
        ("unsigned", "unsigned"),
        (f"token:ci@{'AB' * 32}", f"token:ci@{'ab' * 32}"),  # as the requester vouches for it
        ("token:a@b@" + "0" * 64, "token:a@b@" + "0" * 64),
        ("token:ci", None),  # which requester's ci?
        ("token:ci@r", None),
        ("token:@" + "0" * 64, None),
        ("alice", None),
    ],
)
def test_policy_clients_name_ids_and_vouched_names(tmp_path, item, named):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"clients": [item]}))
    if named is None:
        with pytest.raises(ConfigError, match="clients:"):
            load_policy(path)
    else:
        assert load_policy(path).node.clients == {named}


def test_an_accepted_execution_runs_only_if_who_asked_may_still_have_it_run_here():
    """The node bid on B's job, then its policy came to name only A (a restart with a new
    policy file) and the requester accepted: the node does not start it, and fails it so
    the requester can look elsewhere."""
    w = world()
    theirs = created(w, "b", noop_spec(), key=OTHER_CLIENT)
    w.compute_step("me")  # any client, at bid time
    w.advance(3_000)
    w.requester_step("req")
    (execution,) = w.state.jobs[theirs].active()
    only_a = NodePolicy(clients=frozenset({bytes(CLIENT.verify_key).hex()}))
    assert to_start(w.state, me(w), ALPINE) == [execution]  # the default policy: any client
    assert to_start(w.state, me(w), ALPINE, only_a) == []
    planned = w.plan_compute("me", only_a)
    assert types(planned) == ["ExecutionFailed"]
    assert planned[0][1]["execution_id"] == execution.id
    assert planned[0][1]["reason"].startswith("client not allowed: client ")
    w.compute_step("me", only_a)
    assert (execution.status, execution.permanent) == ("failed", False)
    assert w.plan_compute("me", only_a) == []
    # A client signature tampered after acceptance is refused whatever the policy.
    mine = created(w, "a", noop_spec())
    w.compute_step("me")
    w.advance(3_000)
    w.requester_step("req")
    (accepted,) = w.state.jobs[mine].active()
    w.state.jobs[mine].client_sig = bytes(64)
    assert accepted.id not in {e.id for e in to_start(w.state, me(w), ALPINE)}
