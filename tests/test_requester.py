"""Requester decisions from the harness: events in, planned events out, no I/O."""

from __future__ import annotations

from fractions import Fraction

import pytest
from scheduler_harness import BIG, GIB, World, docker_spec, noop_spec, types

from edgebac.errors import NotFound
from edgebac.eventlog.clock import Hlc
from edgebac.scheduler.ranking import rank_key, reputation_score
from edgebac.scheduler.requester import RequesterConfig, Verdict, bids_awaiting_verdict, cancel
from edgebac.scheduler.state import Bid

WINDOW = RequesterConfig().bid_window_ms


def world(*nodes: str, **labels: dict[str, str]) -> World:
    w = World()
    w.announce("req", roles=("requester",))
    for name in nodes:
        w.announce(name, labels=labels.get(name))
    return w


def bid(w: World, node: str, job: str = "j", attempt: int = 0, **extra) -> None:
    body = {"job_id": w.jid(job), "attempt": attempt, "local_data": False, "free": dict(BIG)}
    body.update(extra)
    w.emit(node, "BidOffered", body)


def decline(w: World, node: str, reason: str, job: str = "j", attempt: int = 0) -> None:
    w.emit(node, "BidDeclined", {"job_id": w.jid(job), "attempt": attempt, "reason": reason})


def accepted(w: World, planned) -> list[bytes]:
    """Nodes accepted by planned (type, body) pairs or by appended events."""
    pairs = [p if isinstance(p, tuple) else (p.type, p.body) for p in planned]
    return [body["node"] for type_, body in pairs if type_ == "BidAccepted"]


def node(w: World, name: str) -> bytes:
    return w.actor(name).id


def name_of(w: World, key: bytes) -> str:
    return next(n for n, a in w.actors.items() if a.id == key)


def run_all(w: World, job: str = "j", exit_code: int = 0) -> None:
    """Every active execution of the job starts and publishes."""
    for execution in w.state.jobs[w.jid(job)].active():
        who = name_of(w, execution.node)
        w.start(who, execution.id)
        w.publish(who, execution.id, exit_code)


def test_waits_for_count_bids_then_accepts_them():
    w = world("a", "b", "c")
    w.submit("req", "j", noop_spec(count=2))
    bid(w, "a")
    assert w.plan_requester("req") == []  # 1 of 2 bids, b and c have not answered
    bid(w, "b")
    planned = w.requester_step("req")
    assert types(planned) == ["BidAccepted", "BidAccepted"]
    assert sorted(accepted(w, planned)) == sorted([node(w, "a"), node(w, "b")])
    assert w.plan_requester("req") == []  # idempotent
    assert w.state.jobs[w.jid("j")].status == "running"
    execution_ids = sorted(w.state.jobs[w.jid("j")].executions)
    assert execution_ids == sorted(w.xid("j", 0, n) for n in "ab")


def test_window_end_accepts_what_is_there():
    w = world("a", "b", "c")
    w.submit("req", "j", noop_spec(count=2))
    bid(w, "a")
    w.advance(WINDOW - 1)
    assert w.plan_requester("req") == []
    w.advance(1)
    assert accepted(w, w.plan_requester("req")) == [node(w, "a")]
    w.requester_step("req")
    bid(w, "b")  # a late bid fills the slot still open
    assert accepted(w, w.plan_requester("req")) == [node(w, "b")]


def test_round_closes_when_every_eligible_node_answered():
    w = world("a", "b", "c", c={"zone": "south"})
    w.submit("req", "j", noop_spec(count=3, constraints=["zone!=south"]))
    bid(w, "a")
    assert w.plan_requester("req") == []
    decline(w, "b", "lack memory")  # c does not match, so nobody else is awaited
    assert accepted(w, w.plan_requester("req")) == [node(w, "a")]


def test_bid_window_from_spec_overrides_config():
    w = world("a", "b")
    w.submit("req", "j", noop_spec(count=2, bid_window_ms=100))
    bid(w, "a")
    w.advance(100)
    assert accepted(w, w.plan_requester("req")) == [node(w, "a")]


def test_rest_are_rejected_as_outranked():
    w = world("a", "b", "c")
    w.submit("req", "j", noop_spec())
    bid(w, "a", local_data=True)
    bid(w, "b")
    bid(w, "c")
    planned = w.plan_requester("req")
    assert accepted(w, planned) == [node(w, "a")]
    rejections = {body["node"]: body["reason"] for t, body in planned if t == "BidRejected"}
    assert rejections == {node(w, "b"): "outranked", node(w, "c"): "outranked"}
    w.emit_all("req", planned)
    assert w.plan_requester("req") == []
    w.announce("d")
    bid(w, "d")  # a bid after all slots are filled
    assert w.plan_requester("req") == [
        (
            "BidRejected",
            {
                "job_id": w.jid("j"),
                "node": node(w, "d"),
                "reason": "enough nodes already run it",
                "attempt": 0,
            },
        )
    ]


@pytest.mark.parametrize(
    ("bids", "winner"),
    [
        # locality beats free resources
        ({"a": {"local_data": True}, "b": {"free": {**BIG, "memory_bytes": 64 * GIB}}}, "a"),
        # more free memory wins
        ({"a": {"free": {**BIG, "memory_bytes": GIB}}, "b": {}}, "b"),
        # then cpu
        ({"a": {"free": {**BIG, "cpu_millis": 100}}, "b": {}}, "b"),
        # then cost
        ({"a": {"cost": 5}, "b": {"cost": 3}}, "b"),
    ],
)
def test_ranking_rules(bids, winner):
    w = world()
    for who, extra in bids.items():  # each announces at least what it will claim free
        w.announce(who, resources=extra.get("free", BIG))
    w.submit("req", "j", noop_spec())
    for who, extra in bids.items():
        bid(w, who, **extra)
    assert accepted(w, w.plan_requester("req")) == [node(w, winner)]


def test_ties_go_to_the_lower_node_id():
    w = world("a", "b")
    w.submit("req", "j", noop_spec())
    bid(w, "a")
    bid(w, "b")
    assert accepted(w, w.plan_requester("req")) == [min(node(w, "a"), node(w, "b"))]


def test_reputation_ranks_after_fit():
    w = world("a", "b")
    for i in range(2):  # a fails twice, b succeeds twice
        w.submit("req", f"old{i}", noop_spec(count=2, retries=5))
        bid(w, "a", job=f"old{i}")
        bid(w, "b", job=f"old{i}")
        w.requester_step("req")
        for e in w.state.jobs[w.jid(f"old{i}")].active():
            who = name_of(w, e.node)
            w.publish(who, e.id, 1 if who == "a" else 0)
    assert w.state.reputation(node(w, "a")) == (0, 2)
    assert w.state.reputation(node(w, "b")) == (2, 0)
    w.submit("req", "j", noop_spec())
    bid(w, "a")
    bid(w, "b")
    assert accepted(w, w.plan_requester("req")) == [node(w, "b")]


def test_rank_key_table():
    def mk(node: bytes, **kw) -> Bid:
        args = {"local_data": False, "free": dict(BIG), "cost": 0, "hlc": Hlc(1)}
        args.update(kw)
        return Bid(node=node, attempt=0, **args)

    fresh = rank_key(mk(b"\x01" * 32), (0, 0), 0)
    assert rank_key(mk(b"\x02" * 32), (0, 0), 1) > fresh  # failed here before
    assert rank_key(mk(b"\x02" * 32, local_data=True), (0, 0), 0) < fresh
    assert rank_key(mk(b"\x02" * 32), (5, 0), 0) < fresh  # reputation
    assert rank_key(mk(b"\x00" * 32, cost=1), (0, 0), 0) > fresh
    assert reputation_score(0, 0) == Fraction(1, 2)
    assert reputation_score(3, 1) == Fraction(2, 3)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"free": {**BIG, "memory_bytes": 1}}, "not enough memory_bytes"),
        ({"free": {}}, "not enough cpu_millis, memory_bytes"),
    ],
)
def test_unusable_bids_are_rejected(extra, reason):
    w = world("a")
    w.submit("req", "j", noop_spec(resources={"cpu": "1", "memory": "1Gi"}))
    bid(w, "a", **extra)
    assert w.plan_requester("req") == [
        (
            "BidRejected",
            {"job_id": w.jid("j"), "node": node(w, "a"), "reason": reason, "attempt": 0},
        )
    ]


def test_label_mismatch_and_lost_bidders_are_rejected():
    w = world("a", "b", a={"zone": "north"}, b={"zone": "north"})
    w.submit("req", "j", noop_spec(constraints=["zone=north"]))
    bid(w, "a")
    bid(w, "b")
    w.announce("a", labels={"zone": "south"})  # relabelled after its bid
    planned = w.plan_requester("req", lost_nodes={node(w, "b")})
    reasons = {body["node"]: body["reason"] for _, body in planned}
    assert reasons == {node(w, "a"): "label mismatch", node(w, "b"): "node lost"}


def test_a_bid_whose_announced_labels_do_not_match_counts_for_nothing():
    w = world("a", "b", a={"zone": "south"})
    w.submit("req", "j", noop_spec(constraints=["zone=north"]))
    bid(w, "a")
    assert w.state.jobs[w.jid("j")].bids == {}
    assert list(w.state.evidence()) == [node(w, "a")]
    assert w.plan_requester("req") == []  # nothing to accept or reject


def test_failed_execution_opens_a_new_round_and_another_node_runs_it():
    w = world("a", "b")
    w.submit("req", "j", noop_spec())
    bid(w, "a", local_data=True)
    bid(w, "b")
    w.requester_step("req")
    (execution,) = w.state.jobs[w.jid("j")].active()
    w.fail("a", execution.id, "disk full")
    planned = w.requester_step("req")
    body = {"job_id": w.jid("j"), "attempt": 1, "reason": "disk full", "wall_ms": w.now_ms}
    assert [(e.type, e.body) for e in planned] == [("BidsRequested", body)]
    assert w.plan_requester("req") == []
    bid(w, "a", attempt=1, local_data=True)
    bid(w, "b", attempt=1)
    # a failed this job already: b wins despite a's local data
    planned = w.requester_step("req")
    assert accepted(w, planned) == [node(w, "b")]
    assert [b["node"] for t, b in ((e.type, e.body) for e in planned) if t == "BidRejected"] == [
        node(w, "a")
    ]
    job = w.state.jobs[w.jid("j")]
    assert [e.node for e in job.active()] == [node(w, "b")]
    assert job.active()[0].id == w.xid("j", 1, "b")
    run_all(w)
    assert types(w.requester_step("req")) == ["JobCompleted"]
    assert w.state.jobs[w.jid("j")].status == "completed"


def test_one_failure_without_retries_is_said_in_the_singular():
    w = world("a")
    w.submit("req", "j", noop_spec(retries=0))
    bid(w, "a")
    w.requester_step("req")
    run_all(w, exit_code=2)
    planned = w.requester_step("req")
    assert types(planned) == ["JobFailed"]
    assert planned[0].body["reason"] == "retry budget spent: 1 execution failed"


def test_non_zero_exit_is_a_failure_and_the_budget_ends_the_job():
    w = world("a")
    w.submit("req", "j", noop_spec(retries=1))
    for attempt in (0, 1):
        bid(w, "a", attempt=attempt)
        w.requester_step("req")
        run_all(w, exit_code=2)
        planned = w.requester_step("req")
    assert types(planned) == ["JobFailed"]
    body = planned[0].body
    assert body["reason"] == "retry budget spent: 2 executions failed"
    assert [(a["attempt"], a["reason"]) for a in body["attempts"]] == [
        (0, "exit code 2"),
        (1, "exit code 2"),
    ]
    job = w.state.jobs[w.jid("j")]
    assert job.status == "failed"
    assert all(e.reference for e in job.executions.values())  # results still published
    assert w.plan_requester("req") == []


def test_execution_timeout_fails_it():
    config = RequesterConfig(grace_ms=1000)
    w = world("a")
    w.submit("req", "j", noop_spec(timeout_s=10))
    bid(w, "a")
    w.requester_step("req", config)
    (execution,) = w.state.jobs[w.jid("j")].active()
    w.start("a", execution.id)
    w.advance(10_999)
    assert w.plan_requester("req", config) == []
    w.advance(1)
    planned = w.requester_step("req", config)
    assert types(planned) == ["ExecutionFailed"]
    assert planned[0].body["reason"] == "timed out: no result 10s after acceptance"
    assert w.state.executions[execution.id].status == "failed"
    assert types(w.plan_requester("req", config)) == ["BidsRequested"]


def test_lost_node_is_declared_and_its_execution_replaced():
    w = world("a", "b")
    w.submit("req", "j", noop_spec())
    w.submit("req", "k", noop_spec())
    for job in "jk":
        bid(w, "a", job=job)
    w.requester_step("req")
    lost = {node(w, "a")}
    planned = w.requester_step("req", lost_nodes=lost)
    assert [(e.type, e.body) for e in planned] == [
        (
            "NodeLost",
            {"node": node(w, "a"), "reason": "no contact", "job_ids": [w.jid("j"), w.jid("k")]},
        )
    ]
    assert {e.status for e in w.state.executions.values()} == {"lost"}
    assert w.state.nodes[node(w, "a")].lost_for(node(w, "req"))
    assert types(w.requester_step("req", lost_nodes=lost)) == ["BidsRequested"] * 2
    assert w.plan_requester("req", lost_nodes=lost) == []
    bid(w, "a", attempt=1)  # it comes back, but is still seen as lost by liveness
    bid(w, "b", attempt=1)
    assert not w.state.nodes[node(w, "a")].lost_for(node(w, "req"))  # heard from since
    assert accepted(w, w.plan_requester("req", lost_nodes=lost)) == [node(w, "b")]


def test_job_no_node_can_take_stays_pending_then_fails():
    w = world("a", "b", "c")
    w.submit("req", "j", noop_spec(timeout_s=30))
    decline(w, "a", "lack memory")
    decline(w, "b", "lack memory")
    decline(w, "c", "label mismatch")
    assert w.state.jobs[w.jid("j")].status == "pending"
    assert w.plan_requester("req") == []
    w.advance(30_000)
    planned = w.requester_step("req")
    assert types(planned) == ["JobFailed"]
    assert (
        planned[0].body["reason"]
        == "no node could run it: 3 nodes: 2 lack memory, 1 label mismatch"
    )


def test_batch_with_too_few_nodes_fails_at_timeout():
    w = world("a", "b")
    w.submit("req", "j", noop_spec(count=2, timeout_s=30))
    bid(w, "a")
    decline(w, "b", "lack gpu")
    w.requester_step("req")
    run_all(w)
    assert w.plan_requester("req") == []
    w.advance(30_000)
    (planned,) = w.plan_requester("req")
    assert planned[1]["reason"] == "only 1 of 2 nodes could run it: 1 node: 1 lack gpu"


def test_ops_runs_on_every_bidder_and_completes_when_the_round_closes():
    w = world("a", "b", "c")
    w.submit("req", "j", noop_spec(type="ops"))
    bid(w, "a")
    assert accepted(w, w.requester_step("req")) == [node(w, "a")]  # at once, window open
    assert [e.node for e in w.state.jobs[w.jid("j")].active()] == [node(w, "a")]
    bid(w, "b")
    w.requester_step("req")
    run_all(w)
    assert w.plan_requester("req") == []  # c has not answered, window open
    decline(w, "c", "image not present")
    assert types(w.requester_step("req")) == ["JobCompleted"]


def test_ops_failure_retries_on_the_same_node():
    w = world("a")
    w.submit("req", "j", noop_spec(type="ops"))
    bid(w, "a")
    w.requester_step("req")
    run_all(w, exit_code=1)
    assert types(w.requester_step("req")) == ["BidsRequested"]
    bid(w, "a", attempt=1)
    w.requester_step("req")
    run_all(w)
    assert types(w.requester_step("req")) == ["JobCompleted"]


def test_cancel():
    w = world("a")
    w.submit("req", "j", noop_spec())
    bid(w, "a")
    w.requester_step("req")
    j = w.jid("j")
    assert cancel(w.state, j, "user asked") == [
        ("JobCanceled", {"job_id": j, "reason": "user asked"})
    ]
    w.cancel("req", j, "user asked")
    assert w.state.jobs[j].status == "canceled"
    assert [e.status for e in w.state.jobs[j].executions.values()] == ["canceled"]
    assert cancel(w.state, j) == []
    assert w.plan_requester("req") == []
    with pytest.raises(NotFound):
        cancel(w.state, "nope")


def test_only_my_jobs():
    w = world("a")
    w.announce("other", roles=("requester",))
    w.submit("other", "j", noop_spec())
    bid(w, "a")
    assert w.plan_requester("req") == []
    assert types(w.plan_requester("other")) == ["BidAccepted"]


def test_accept_hook_verdicts():
    config = RequesterConfig(hook=True)
    w = world("a", "b")
    w.submit("req", "j", docker_spec())
    bid(w, "a")
    bid(w, "b")
    keys = [key for key, _ in bids_awaiting_verdict(w.state, node(w, "req"))]
    assert sorted(keys) == sorted((w.jid("j"), 0, node(w, n)) for n in "ab")
    assert w.plan_requester("req", config) == []  # waiting for the hook
    verdicts = {(w.jid("j"), 0, node(w, "a")): Verdict(False, "not on weekends")}
    planned = w.plan_requester("req", config, verdicts=verdicts)
    assert [(t, b["reason"]) for t, b in planned] == [
        ("BidRejected", "accept hook: not on weekends")
    ]
    verdicts[(w.jid("j"), 0, node(w, "b"))] = Verdict(True)
    assert accepted(w, w.plan_requester("req", config, verdicts=verdicts)) == [node(w, "b")]


def test_decisions_replay_identically():
    w = world("a", "b")
    w.submit("req", "j", noop_spec(count=2))
    bid(w, "a")
    bid(w, "b")
    again = World()
    again.state.apply(w.log)
    assert again.state.state_hash() == w.state.state_hash()
    config = RequesterConfig()
    me = node(w, "req")
    from edgebac.scheduler.requester import decide

    assert decide(again.state, w.now_ms, me, config) == w.plan_requester("req")


def test_a_usable_bid_at_the_timeout_is_taken_rather_than_failing():
    w = world("a")
    w.submit("req", "j", noop_spec(timeout_s=30))
    w.advance(30_000)
    bid(w, "a")
    assert accepted(w, w.plan_requester("req")) == [node(w, "a")]
