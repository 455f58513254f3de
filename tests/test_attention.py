"""What the runner looks at each round: changed jobs, due jobs, and everything now and then."""

from __future__ import annotations

from scheduler_harness import BIG, World, noop_spec

from edgebac.scheduler import requester
from edgebac.scheduler.attention import Attention


def test_changed_due_and_full_looks():
    attention = Attention(full_every_ms=1_000)
    assert attention.take(0) is None  # the first look is a full one
    attention.changed({"a", "b"})
    assert attention.take(10) == {"a", "b"}
    assert attention.take(20) == set()
    attention.due_at(500, "c")
    attention.due_at(300, "c")  # an earlier limit wins; the later entry is harmless
    assert attention.take(299) == set()
    assert attention.take(300) == {"c"}
    assert attention.take(600) == set()
    attention.everything()
    assert attention.take(601) is None
    assert attention.take(1_600) == set()
    assert attention.take(1_601) is None  # full_every_ms after the last full look


def test_next_deadline_names_the_first_time_limit_ahead():
    w = World()
    w.announce("req", roles=("requester",))
    w.announce("a")
    w.submit("req", "j", noop_spec(timeout_s=10))
    config = requester.RequesterConfig(bid_window_ms=2_000, grace_ms=30_000)
    job = w.state.jobs[w.jid("j")]
    opened = job.round_hlc.ms
    assert requester.next_deadline(job, w.now_ms, config) == opened + 2_000  # bid window
    assert requester.next_deadline(job, opened + 2_000, config) == opened + 10_000  # timeout
    w.emit("a", "BidOffered", {"job_id": w.jid("j"), "attempt": 0, "free": BIG})
    w.requester_step("req", config)
    (execution,) = job.active()
    late = opened + 10_000
    assert requester.next_deadline(job, late, config) == execution.accepted_hlc.ms + 40_000
    w.publish("a", execution.id)
    w.requester_step("req", config)
    assert job.terminal
    assert requester.next_deadline(job, late, config) is None
