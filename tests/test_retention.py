"""Letting go of ended jobs: same state hash, indexes and decisions as holding everything, late
events reload the job from the log, and what stays of a job is small."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduler_harness import BIG, World, noop_spec
from test_projection import indexes, interleave, simulate

from edgebac.eventlog.encoding import Event
from edgebac.scheduler import compute, requester
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.retention import Retention, Seen

EAGER = Retention(ended_ms=0, ended_max=0)  # let go of every job as soon as it ends


def by_job(log: list[Event], job_id: str) -> list[Event]:
    """What `EventLog.by_job` gives: events whose body names the job (not NodeLost)."""
    return [e for e in log if e.job_id == job_id]


def reload_all(p: Projection, log: list[Event]) -> None:
    """What the runner does after each fold."""
    for job_id in sorted(p.needs_reload):
        p.reload(job_id, by_job(log, job_id))


def decisions(p: Projection, w: World) -> list:
    out = []
    for name in ("req", "req2", "a", "b", "c"):
        me = w.actor(name).id
        out.append(requester.decide(p, w.now_ms, me, requester.RequesterConfig()))
        facts = compute.LocalFacts()
        out.append(compute.decide(p, w.now_ms, me, compute.NodePolicy(), facts))
    return out


def derived(p: Projection, nodes: list[bytes]) -> dict:
    return {
        "active": {n: sorted(p.active_on(n)) for n in nodes},
        "claimed": {n: p.claimed(n) for n in nodes},
        "reputation": {n: p.reputation(n) for n in nodes},
    }


def job_ids(p: Projection) -> list[str]:
    return sorted([*p.jobs, *p.evicted])


def base() -> World:
    w = World()
    w.announce("req", roles=("requester",))
    for name in ("a", "b"):
        w.announce(name)
    return w


def completed(w: World, name: str = "j", decline: bool = False) -> None:
    w.submit("req", name, noop_spec())
    job_id = w.jid(name)
    if decline:
        w.emit("b", "BidDeclined", {"job_id": job_id, "attempt": 0, "reason": "lack memory"})
    w.emit("a", "BidOffered", {"job_id": job_id, "attempt": 0, "free": BIG})
    w.requester_step("req")
    (execution,) = w.state.jobs[job_id].active()
    w.start("a", execution.id)
    w.publish("a", execution.id)
    w.requester_step("req")
    assert w.state.jobs[job_id].status == "completed"


def ended_and_let_go() -> tuple[World, Projection, Projection]:
    """A completed job's world, its full projection, and one that let the job go."""
    w = base()
    completed(w)
    full = Projection.from_events(w.log)
    p = Projection(EAGER)
    p.apply(w.log)
    return w, full, p


def test_an_ended_job_is_let_go_of_and_keeps_its_part_of_the_hash():
    w, full, p = ended_and_let_go()
    j = w.jid("j")
    assert j not in p.jobs
    assert j in p.evicted
    assert p._buckets == {}
    assert p.needs_reload == set()
    assert p.state_hash() == full.state_hash()
    assert p.executions.keys() == full.executions.keys()
    assert p.reputation(w.actor("a").id) == (1, 0)
    ended = p.evicted[j]
    assert (ended.status, ended.engine, ended.requester) == ("completed", "noop", w.actor("req").id)
    assert p.rebuild(j, by_job(w.log, j)).to_dict() == full.jobs[j].to_dict()


def test_the_jobs_an_apply_let_go_of_stay_in_full_until_the_next():
    w, full, p = ended_and_let_go()
    assert p.released[w.jid("j")].to_dict() == full.jobs[w.jid("j")].to_dict()
    p.apply([])
    assert p.released == {}


def test_a_late_event_before_the_end_reloads_the_job():
    w = base()
    completed(w, decline=True)
    # b's decline was written before the job ended, but reaches us after it was let go of.
    (late,) = [e for e in w.log if e.type == "BidDeclined"]
    w.advance(1)
    j = w.jid("j")
    p = Projection(EAGER)
    assert p.apply([e for e in w.log if e is not late]) == {j}
    assert j in p.evicted
    # Written after the end: changes nothing, no reload.
    after = w.emit("a", "BidOffered", {"job_id": j, "attempt": 0, "free": BIG})
    assert p.apply([after]) == set()
    assert p.needs_reload == set()
    assert (
        p.state_hash() == Projection.from_events([e for e in w.log if e is not late]).state_hash()
    )
    # Sorting before the end: the job needs its events from the log.
    assert p.apply([late]) == set()
    assert p.needs_reload == {j}
    assert p.reload(j, by_job(w.log, j)) == {j}
    assert p.needs_reload == set()
    assert j in p.evicted
    assert p.state_hash() == Projection.from_events(w.log).state_hash()
    assert p.reputation(w.actor("a").id) == (1, 0)


def test_late_node_lost_is_kept_for_reloads():
    """NodeLost names its jobs in a list: the log does not find it by job, the projection
    keeps it with the evicted job."""
    w = base()
    w.submit("req", "j", noop_spec(retries=1))
    j = w.jid("j")
    w.emit("a", "BidOffered", {"job_id": j, "attempt": 0, "free": BIG})
    w.requester_step("req")
    lost = w.requester_step("req", lost_nodes={w.actor("a").id})
    assert [e.type for e in lost] == ["NodeLost"]
    w.cancel("req", j)
    p = Projection(EAGER)
    p.apply(w.log)
    assert p.evicted[j].lost == tuple(lost)
    w.advance(1)
    p.apply([w.emit("b", "BidOffered", {"job_id": j, "attempt": 0, "free": BIG})])
    p.needs_reload.add(j)  # as if an earlier event had come late
    p.reload(j, by_job(w.log, j))
    assert p.state_hash() == Projection.from_events(w.log).state_hash()
    assert p.executions == Projection.from_events(w.log).executions


def test_count_limit_keeps_the_latest_ended_jobs():
    w = base()
    for i in range(5):
        completed(w, f"j{i}")
    p = Projection(Retention(ended_ms=10**9, ended_max=2))
    for event in w.log:
        p.apply([event])
    assert sorted(p.jobs) == sorted(w.jid(f"j{i}") for i in (3, 4))
    assert sorted(p.evicted) == sorted(w.jid(f"j{i}") for i in (0, 1, 2))
    assert p.state_hash() == Projection.from_events(w.log).state_hash()


def test_time_limit_lets_go_of_jobs_ended_long_enough_ago():
    w = base()
    completed(w, "old")
    w.advance(61_000)
    completed(w, "new")
    p = Projection(Retention(ended_ms=60_000, ended_max=100))
    p.apply(w.log)
    assert list(p.jobs) == [w.jid("new")]
    assert list(p.evicted) == [w.jid("old")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32),
    st.integers(10, 80),
    st.sampled_from([EAGER, Retention(ended_ms=2_000, ended_max=1)]),
    st.randoms(use_true_random=False),
)
def test_evicting_and_reloading_folds_like_holding_everything(seed, steps, retention, rnd):
    """Any causal arrival order, in chunks, with jobs let go of as soon as they may be and
    reloaded from the log (what arrived so far) when needed: after every chunk, the same state
    hash, live jobs, indexes and decisions as a projection that holds everything."""
    w = simulate(seed, steps)
    order = interleave(w.log, rnd)
    full, p = Projection(), Projection(retention)
    i = 0
    while i < len(order):
        n = rnd.randint(1, 5)
        chunk = order[i : i + n]
        i += n
        full.apply(chunk)
        p.apply(chunk)
        reload_all(p, order[:i])
        assert p.state_hash() == full.state_hash()
        assert job_ids(p) == sorted(full.jobs)
        assert sorted(p.live) == sorted(full.live)
        nodes = [*full.nodes, *(b.node for j in full.jobs.values() for b in j.bids.values())]
        assert derived(p, nodes) == derived(full, nodes)
        indexes(p)  # consistent with the held jobs
        assert p.executions.keys() == full.executions.keys()
        assert p.evidence() == full.evidence()  # kept for the jobs let go of
        assert decisions(p, w) == decisions(full, w)
    for job_id, ended in p.evicted.items():
        assert p.rebuild(job_id, by_job(w.log, job_id)).to_dict() == full.jobs[job_id].to_dict()
        assert ended.status == full.jobs[job_id].status


def test_seen_tracks_chains_in_any_order():
    w = base()
    completed(w)
    seen = Seen()
    chain = [e for e in w.log if e.author == w.actor("req").id]
    for event in [chain[2], chain[0], chain[2]]:
        seen.add(event)
    assert [e in seen for e in chain] == [True, False, True, False, False][: len(chain)]
    for event in chain:
        seen.add(event)
    assert all(e in seen for e in chain)
    assert seen._above == {}
    assert seen._upto[w.actor("req").id] == len(chain)


def test_replay_of_a_long_history_keeps_only_recent_jobs():
    w = base()
    rnd = random.Random(1)
    for i in range(40):
        completed(w, f"j{i}")
        if rnd.random() < 0.3:
            w.advance(70_000)
    p = Projection(Retention())
    for i in range(0, len(w.log), 7):
        p.apply(w.log[i : i + 7])
    assert len(p.jobs) <= Retention().ended_max
    assert len(p.jobs) + len(p.evicted) == 40
    assert all(len(bucket) < 20 for bucket in p._buckets.values())
    assert p.state_hash() == Projection.from_events(w.log).state_hash()
