"""The projection: who may say what, statuses, and order-free folding (property tests)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduler_harness import BIG, World, noop_spec

from edgebac.eventlog.encoding import Event
from edgebac.scheduler.compute import LocalFacts, NodePolicy
from edgebac.scheduler.projection import Projection


def base(*nodes: str) -> World:
    w = World()
    w.announce("req", roles=("requester",))
    for name in nodes:
        w.announce(name)
    return w


def running(w: World, node: str = "a") -> str:
    """Submit j, have `node` bid and be accepted; returns the execution id."""
    w.submit("req", "j", noop_spec())
    w.emit(node, "BidOffered", {"job_id": w.jid("j"), "attempt": 0, "free": BIG})
    w.requester_step("req")
    (execution,) = w.state.jobs[w.jid("j")].active()
    return execution.id


def test_statuses_through_a_job_life():
    w = base("a", "b")
    w.submit("req", "j", noop_spec())
    job = w.state.jobs[w.jid("j")]
    assert job.status == "bidding"
    w.emit("b", "BidDeclined", {"job_id": w.jid("j"), "attempt": 0, "reason": "lack memory"})
    assert job.status == "pending"
    w.emit("a", "BidOffered", {"job_id": w.jid("j"), "attempt": 0, "free": BIG})
    assert job.status == "bidding"
    w.requester_step("req")
    (execution,) = job.active()
    assert (job.status, execution.status) == ("running", "accepted")
    w.start("a", execution.id)
    assert execution.status == "running"
    w.publish("a", execution.id)
    assert (job.status, execution.status, execution.exit_code) == ("running", "completed", 0)
    w.requester_step("req")
    assert job.status == "completed"
    assert w.state.reputation(w.actor("a").id) == (1, 0)


def test_only_the_requester_accepts_and_ends_jobs():
    w = base("a", "b")
    w.submit("req", "j", noop_spec())
    w.emit("a", "BidOffered", {"job_id": w.jid("j"), "attempt": 0, "free": BIG})
    j = w.jid("j")
    body = {"job_id": j, "node": w.actor("a").id, "execution_id": w.xid("j", 0, "a")}
    w.emit("b", "BidAccepted", {**body, "attempt": 0})
    assert w.state.jobs[j].executions == {}
    for type_ in ("JobCompleted", "JobCanceled"):
        w.emit("a", type_, {"job_id": j})
    w.emit("a", "JobFailed", {"job_id": j, "reason": "x"})
    w.emit("b", "BidsRequested", {"job_id": j, "attempt": 3})
    assert (w.state.jobs[j].status, w.state.jobs[j].attempt) == ("bidding", 0)
    evidence = w.state.evidence()
    assert {who: sum(reasons.values()) for who, reasons in evidence.items()} == {
        w.actor("a").id: 3,
        w.actor("b").id: 2,
    }
    b = {"job_id": j, "node": w.actor("b").id, "execution_id": w.xid("j", 0, "b"), "attempt": 0}
    w.emit("req", "BidAccepted", b)  # b never bid: the requester's, but it fits nothing
    assert w.state.jobs[j].executions == {}
    assert w.state.evidence() == evidence


def test_only_the_accepted_node_reports_on_its_execution():
    w = base("a", "b")
    execution_id = running(w)
    execution = w.state.executions[execution_id]
    w.start("b", execution_id)
    assert execution.status == "accepted"
    w.publish("b", execution_id)
    w.fail("b", execution_id)
    assert execution.status == "accepted"
    w.emit("b", "NodeLost", {"node": w.actor("a").id, "reason": "x", "job_ids": [w.jid("j")]})
    assert execution.status == "accepted"
    w.fail("req", execution_id, "timed out")  # the requester may fail it
    assert (execution.status, execution.reason) == ("failed", "timed out")
    w.publish("a", execution_id)  # too late: it already failed
    assert execution.status == "failed"


def test_node_lost_marks_only_listed_jobs():
    w = base("a")
    execution_id = running(w)
    w.emit("req", "NodeLost", {"node": w.actor("a").id, "reason": "gone", "job_ids": ["other"]})
    assert w.state.executions[execution_id].status == "accepted"
    lost = {"node": w.actor("a").id, "reason": "gone", "job_ids": [w.jid("j")]}
    w.emit("req", "NodeLost", lost)
    assert w.state.executions[execution_id].status == "lost"
    assert w.state.executions[execution_id].reason == "node lost: gone"


def test_invalid_spec_makes_a_failed_job():
    w = base()
    w.submit("req", "j", {"engine": {"type": "nope"}})
    job = w.state.jobs[w.jid("j")]
    assert (job.status, job.spec) == ("failed", None)
    assert "engine.type" in str(job.reason)


def test_late_job_created_and_duplicates():
    w = base("a")
    execution_id = running(w)
    w.publish("a", execution_id)
    whole = Projection.from_events(w.log)
    late = Projection()
    changed = late.apply([e for e in w.log if e.type != "JobCreated"])
    assert w.jid("j") not in late.jobs
    assert changed == set()
    assert late.apply([e for e in w.log if e.type == "JobCreated"]) == {w.jid("j")}
    late.apply(w.log)  # all duplicates
    assert late.state_hash() == whole.state_hash()
    assert late.executions.keys() == whole.executions.keys()


def test_race_between_timeout_and_result_is_decided_by_clock_order():
    w = base("a")
    execution_id = running(w)
    result = w.publish("a", execution_id)
    timeout = w.fail("req", execution_id, "timed out")  # after: ignored
    assert w.state.executions[execution_id].status == "completed"
    reordered = Projection.from_events([e for e in w.log if e not in (result, timeout)])
    reordered.apply([timeout, result])
    assert reordered.state_hash() == w.state.state_hash()
    assert reordered.reputation(w.actor("a").id) == (1, 0)


def test_latest_announcement_wins_in_any_order():
    w = base()
    first = w.announce("a", labels={"v": "1"})
    second = w.announce("a", labels={"v": "2"})
    p = Projection.from_events([second, first])
    assert p.nodes[w.actor("a").id].labels == {"v": "2"}


# --- property tests -----------------------------------------------------------------------

NODES = ("a", "b", "c")
SPECS = [
    noop_spec(),
    noop_spec(count=2, retries=1),
    noop_spec(type="ops", retries=0),
    noop_spec(resources={"memory": "12Gi"}),
    noop_spec(constraints=["zone=north"]),
]


def _act(w: World, rnd: random.Random, step: int) -> None:
    """One random step of a small network: everyone follows the protocol, mostly."""
    choice = rnd.randrange(9)
    live = [e for e in w.state.executions.values() if e.active]
    names = {w.actor(n).id: n for n in NODES}
    if choice == 0:
        w.submit(rnd.choice(["req", "req2"]), f"j{step}", rnd.choice(SPECS))
    elif choice == 1:
        w.compute_step(rnd.choice(NODES), NodePolicy(), LocalFacts())
    elif choice == 2:
        lost = {w.actor(rnd.choice(NODES)).id} if rnd.random() < 0.2 else set()
        w.requester_step(rnd.choice(["req", "req2"]), lost_nodes=lost)
    elif choice in (3, 4) and live:
        _progress(w, rnd, rnd.choice(live), names)
    elif choice == 5:
        w.advance(rnd.choice([100, 2_000, 70_000]))
    elif choice == 6 and w.state.jobs:  # by the job's requester, as its API does
        job = w.state.jobs[rnd.choice(sorted(w.state.jobs))]
        who = "req" if job.requester == w.actor("req").id else "req2"
        w.cancel(who, job.id, "test")
    elif choice == 7 and live:  # a stranger speaks out of turn: must be ignored
        execution = rnd.choice(live)
        body = {"job_id": execution.job_id, "execution_id": execution.id, "exit_code": 0}
        w.emit(rnd.choice(NODES), "ResultPublished", body)
    elif choice == 8:
        w.announce(rnd.choice(NODES), labels={"zone": rnd.choice(["north", "south"])})


def _progress(w: World, rnd: random.Random, execution, names: dict[bytes, str]) -> None:
    who = names[execution.node]
    if execution.status == "accepted":
        w.start(who, execution.id)
    elif rnd.random() < 0.7:
        w.publish(who, execution.id, rnd.choice([0, 0, 1]))
    else:
        w.fail(who, execution.id)


def simulate(seed: int, steps: int) -> World:
    rnd = random.Random(seed)
    w = World()
    for who in ("req", "req2"):
        w.announce(who, roles=("requester",))
    for name in NODES:
        w.announce(name, labels={"zone": "north"})
    for step in range(steps):
        _act(w, rnd, step)
    return w


def interleave(events: list[Event], rnd: random.Random) -> list[Event]:
    """A random arrival order that keeps each author's own order."""
    chains: dict[bytes, list[Event]] = {}
    for event in events:
        chains.setdefault(event.author, []).append(event)
    queues = [list(reversed(chain)) for chain in chains.values()]
    out = []
    while queues:
        queue = rnd.choice(queues)
        out.append(queue.pop())
        if not queue:
            queues.remove(queue)
    return out


def apply_in_chunks(events: list[Event], rnd: random.Random) -> Projection:
    p = Projection()
    i = 0
    while i < len(events):
        n = rnd.randint(1, 5)
        p.apply(events[i : i + n])
        i += n
    return p


def indexes(state: Projection) -> dict:
    """The derived indexes, and what they must equal when recomputed from the jobs."""
    nodes = {e.node for e in state.executions.values()}
    nodes |= {b.node for j in state.jobs.values() for b in j.bids.values()}
    got = {
        "live": sorted(state.live),
        "active": {n: sorted(state.active_on(n)) for n in nodes},
        "claimed": {n: state.claimed(n) for n in nodes},
    }
    claimed = {n: dict.fromkeys(state.claimed(n), 0) for n in nodes}
    for job in state.jobs.values():
        if job.terminal or job.spec is None:
            continue
        for node in nodes:
            claims = sum(1 for e in job.executions.values() if e.node == node and e.active)
            claims += sum(
                1 for b in job.round_bids() if b.node == node and not job.decided(b.attempt, node)
            )
            for key, amount in job.spec.resources.amounts().items():
                claimed[node][key] += claims * amount
    want = {
        "live": sorted(j.id for j in state.jobs.values() if not j.terminal),
        "active": {
            n: sorted(e.id for e in state.executions.values() if e.node == n and e.active)
            for n in nodes
        },
        "claimed": claimed,
    }
    assert got == want
    return got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(10, 80), st.randoms(use_true_random=False))
def test_simulated_histories_fold_the_same_in_any_causal_order(seed, steps, rnd):
    w = simulate(seed, steps)
    expected = w.state.state_hash()  # folded incrementally in arrival order
    # Only the out-of-turn results of `_act` break a rule: no honest step is evidence.
    reasons = {reason for by_reason in w.state.evidence().values() for reason in by_reason}
    assert reasons <= {
        "ResultPublished by a node other than the node the execution was accepted for"
    }
    assert Projection.from_events(w.log).state_hash() == expected
    shuffled = interleave(w.log, rnd)
    assert Projection.from_events(shuffled).state_hash() == expected
    chunked = apply_in_chunks(shuffled, rnd)
    assert chunked.to_dict() == w.state.to_dict()
    assert chunked.evidence() == w.state.evidence()  # the strangers' results, the same
    assert indexes(chunked) == indexes(w.state)
