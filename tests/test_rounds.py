"""Retry rounds, permanent failures, deadlines under clock drag, surplus results and waiting
messages: requester decisions and the projection from the harness, no I/O (issue 12)."""

from __future__ import annotations

import random

import pytest
from scheduler_harness import World, noop_spec, types
from test_requester import WINDOW, accepted, bid, decline, node, run_all, world

from edgebac.scheduler import requester
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.reasons import waiting_reason
from edgebac.scheduler.requester import RequesterConfig

SKEW_MS = 250_000  # inside the default tolerance of 5 minutes


def fail_all(w: World, job: str = "j") -> None:
    run_all(w, job, exit_code=1)


# ----- retry rounds -------------------------------------------------------------------------


def test_a_retry_round_waits_for_every_eligible_node_and_runs_elsewhere():
    w = world("a", "b", "c")
    w.submit("req", "j", noop_spec(retries=2))
    bid(w, "a")
    assert accepted(w, w.requester_step("req")) == [node(w, "a")]  # a first round: at once
    ran = []
    for attempt in (1, 2):
        ran.append(w.state.jobs[w.jid("j")].active()[0].node)
        fail_all(w)
        assert types(w.requester_step("req")) == ["BidsRequested"]
        bid(w, "a", attempt=attempt)  # the node that failed answers first, as it is the fastest
        assert w.plan_requester("req") == []  # b and c have not answered: the round stays open
        bid(w, "b", attempt=attempt)
        assert w.plan_requester("req") == []
        bid(w, "c", attempt=attempt)
        planned = w.requester_step("req")
        (winner,) = accepted(w, planned)
        assert winner not in ran  # every node that failed it ranks after those that did not
    ran.append(w.state.jobs[w.jid("j")].active()[0].node)
    fail_all(w)
    assert types(w.requester_step("req")) == ["JobFailed"]
    assert sorted(ran) == sorted(node(w, n) for n in "abc")


def test_a_retry_round_closes_when_the_others_decline_or_the_window_ends():
    w = world("a", "b", "c")
    w.submit("req", "j", noop_spec(retries=2))
    bid(w, "a")
    w.requester_step("req")
    fail_all(w)
    w.requester_step("req")
    bid(w, "a", attempt=1)
    decline(w, "b", "image not present", attempt=1)
    assert w.plan_requester("req") == []  # c is still deciding
    w.advance(WINDOW)
    assert accepted(w, w.plan_requester("req")) == [node(w, "a")]  # nobody else: a again


def test_with_one_node_retries_run_there():
    w = world("a")
    w.submit("req", "j", noop_spec(retries=2))
    for attempt in range(3):
        bid(w, "a", attempt=attempt)
        assert accepted(w, w.requester_step("req")) == [node(w, "a")]  # everyone answered
        fail_all(w)
        planned = w.requester_step("req")
    assert types(planned) == ["JobFailed"]
    assert planned[0].body["reason"] == "retry budget spent: 3 executions failed"


# ----- permanent failures -------------------------------------------------------------------


def permanent_failure(w: World, who: str = "a", permanent: bool = True) -> None:
    (execution,) = w.state.jobs[w.jid("j")].active()
    w.start(who, execution.id)
    reason = "not a valid wasm module"
    body = {"job_id": w.jid("j"), "execution_id": execution.id, "reason": reason}
    w.emit(who, "ExecutionFailed", {**body, "permanent": permanent})


def test_a_permanent_failure_fails_the_job_at_once_saying_why():
    w = world("a", "b")
    w.submit("req", "j", noop_spec(retries=3))
    bid(w, "a")
    w.requester_step("req")
    permanent_failure(w)
    planned = w.requester_step("req")
    assert types(planned) == ["JobFailed"]
    assert planned[0].body["reason"] == (
        "not retried: not a valid wasm module (it would fail on any node)"
    )
    assert w.state.jobs[w.jid("j")].status == "failed"


@pytest.mark.parametrize(("who", "permanent"), [("a", False), ("req", True)])
def test_only_the_execution_s_node_can_call_a_failure_permanent(who, permanent):
    w = world("a")
    w.submit("req", "j", noop_spec(retries=1))
    bid(w, "a")
    w.requester_step("req")
    permanent_failure(w, who, permanent)
    assert types(w.plan_requester("req")) == ["BidsRequested"]  # an ordinary retry


# ----- deadlines hold whatever another node's clock says ------------------------------------


def test_a_future_dated_event_does_not_stretch_the_pending_timeout():
    w = world("a")
    w.future_event(SKEW_MS)  # every hlc from here on is 250 s ahead of the wall clock
    w.submit("req", "j", noop_spec(timeout_s=10, constraints=["zone=nowhere"]))
    decline(w, "a", "label mismatch")
    assert w.state.jobs[w.jid("j")].created_hlc.ms >= w.now_ms + SKEW_MS
    assert requester.next_deadline(w.state.jobs[w.jid("j")], w.now_ms, RequesterConfig()) == (
        w.now_ms + WINDOW
    )
    w.advance(9_999)
    assert w.plan_requester("req") == []
    w.advance(1)
    assert types(w.plan_requester("req")) == ["JobFailed"]


def test_a_future_dated_event_does_not_stretch_the_window_or_the_execution_timeout():
    config = RequesterConfig(grace_ms=1000)
    w = world("a", "b")
    w.submit("req", "j", noop_spec(timeout_s=10, count=2))
    w.future_event(SKEW_MS)
    bid(w, "a")
    w.advance(WINDOW)
    assert accepted(w, w.requester_step("req", config)) == [node(w, "a")]  # window ended
    (execution,) = w.state.jobs[w.jid("j")].active()
    w.start("a", execution.id)
    due = requester.next_deadline(w.state.jobs[w.jid("j")], w.now_ms, config)
    assert due == w.now_ms + 10_000 - WINDOW  # the pending timeout, then the execution's
    w.advance(10_999)
    assert "ExecutionFailed" not in types(w.plan_requester("req", config))
    w.advance(1)
    assert "ExecutionFailed" in types(w.plan_requester("req", config))


def test_a_retry_round_window_counts_from_the_requester_s_wall_clock():
    w = world("a", "b")
    w.submit("req", "j", noop_spec(retries=1))
    bid(w, "a")
    w.requester_step("req")
    w.future_event(SKEW_MS)
    fail_all(w)
    w.requester_step("req")
    bid(w, "a", attempt=1)
    w.advance(WINDOW - 1)
    assert w.plan_requester("req") == []
    w.advance(1)
    assert accepted(w, w.plan_requester("req")) == [node(w, "a")]


@pytest.mark.parametrize("wall", [None, "soon", -1, "ahead"])
def test_without_a_usable_wall_ms_deadlines_count_from_the_hlc(wall):
    w = world("a")
    body = w.job_request("req", "j", noop_spec(timeout_s=10))
    del body["wall_ms"]
    if wall is not None:
        body["wall_ms"] = w.now_ms + 60_000 if wall == "ahead" else wall  # after its own hlc
    created = w.emit("req", "JobCreated", body)
    assert w.state.jobs[w.jid("j")].round_ms == created.hlc.ms


# ----- surplus results after a partition ----------------------------------------------------


def partitioned_twice() -> World:
    """a runs j during a partition; the requester declares it lost and b runs it too; a's
    result, written before the NodeLost, arrives after b's."""
    w = world("a", "b")
    w.submit("req", "j", noop_spec())
    bid(w, "a")
    w.requester_step("req")
    (first,) = w.state.jobs[w.jid("j")].active()
    w.start("a", first.id)
    before_lost = w.last
    w.advance(1_000)
    w.requester_step("req", lost_nodes={node(w, "a")})  # NodeLost
    w.requester_step("req", lost_nodes={node(w, "a")})  # BidsRequested
    bid(w, "b", attempt=1)
    w.requester_step("req", lost_nodes={node(w, "a")})
    run_all(w)
    now, newest = w.now_ms, w.last
    w.now_ms, w.last = before_lost.ms, before_lost  # a's clock, while it was cut off
    w.publish("a", first.id)
    w.now_ms, w.last = now, newest
    return w


def test_the_first_count_results_in_log_order_count_the_rest_are_surplus():
    w = partitioned_twice()
    job = w.state.jobs[w.jid("j")]
    by_node = {e.node: e for e in job.executions.values()}
    assert [e.status for e in by_node.values()] == ["completed", "completed"]
    assert not by_node[node(w, "a")].surplus  # its result sorts first in (hlc, author, seq)
    assert by_node[node(w, "b")].surplus
    assert [e.node for e in job.counted()] == [node(w, "a")]
    assert types(w.requester_step("req")) == ["JobCompleted"]
    for seed in range(5):
        events = list(w.log)
        random.Random(seed).shuffle(events)
        events.sort(key=lambda e: (e.author, e.seq))  # any order that keeps each chain's own
        again = Projection.from_events(events).jobs[w.jid("j")]
        assert {e.id: e.surplus for e in again.executions.values()} == {
            e.id: e.surplus for e in job.executions.values()
        }
    assert job.to_dict()["executions"][by_node[node(w, "b")].id]["surplus"] is True


# ----- waiting messages ---------------------------------------------------------------------


def test_waiting_says_how_many_nodes_it_needs_and_how_many_bid():
    w = world("a", "b")
    w.submit("req", "j", noop_spec(count=3))
    job = w.state.jobs[w.jid("j")]
    assert waiting_reason(job) == "needs 3 nodes, 0 bid"
    bid(w, "a")
    bid(w, "b")
    w.requester_step("req")  # both eligible nodes answered: the round closes with 2
    run_all(w)
    assert job.status == "bidding"
    assert waiting_reason(job) == "needs 3 nodes, 2 bid"


def test_waiting_hides_reasons_of_busy_nodes_and_shows_settled_ones():
    w = world("a", "b", "c", "d")
    w.submit("req", "j", noop_spec(count=3))
    job = w.state.jobs[w.jid("j")]
    bid(w, "a")
    decline(w, "b", "busy")  # its memory is held by other work for now: still deciding
    assert waiting_reason(job) == "needs 3 nodes, 1 bid, 1 busy"
    decline(w, "c", "label mismatch")
    assert waiting_reason(job) == "needs 3 nodes, 1 bid, 1 busy; 1 node: 1 label mismatch"
    decline(w, "d", "lack memory")
    assert waiting_reason(job) == (
        "needs 3 nodes, 1 bid, 1 busy; 2 nodes: 1 label mismatch, 1 lack memory"
    )


def test_when_every_node_declined_the_declines_say_it():
    w = world("a", "b")
    w.submit("req", "j", noop_spec())
    decline(w, "a", "lack memory")
    decline(w, "b", "lack memory")
    assert waiting_reason(w.state.jobs[w.jid("j")]) == "2 nodes: 2 lack memory"
