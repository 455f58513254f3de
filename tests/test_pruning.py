"""Pruning the log, pure part: a fold of the kept events started from the horizon is the
state the projection had just after it pruned (property tests over random histories and
arrival orders, with one or two prunes), and the horizon survives packing and signing."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from test_projection import interleave, simulate
from test_retention import EAGER, reload_all

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import Event
from edgebac.eventlog.horizon import (
    Horizon,
    HorizonError,
    Pruned,
    extend,
    opened,
    pack,
    sign,
    unpack,
)
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.pruning import forget, prunable, start_from


def ended_before(log: list[Event], cut: Hlc) -> list[str]:
    """The store's rule: jobs every event of which is older than the cut."""
    newest: dict[str, Hlc] = {}
    for e in log:
        if e.job_id is not None:
            newest[e.job_id] = max(newest.get(e.job_id, e.hlc), e.hlc)
    return sorted(j for j, hlc in newest.items() if hlc < cut)


def prune(p: Projection, log: list[Event], cut: Hlc, old: Horizon | None):
    """What a node does: forget the jobs, remove their events, extend the horizon."""
    gone, reputation = forget(p, ended_before(log, cut))
    went = set(gone)
    rows = tuple((e.author, e.seq, e.id, e.hlc.pack()) for e in log if e.job_id in went)
    kept = [e for e in log if e.job_id not in went]
    return kept, extend(old, cut, Pruned(rows, len(gone), reputation)), went


def folded_from(horizon: Horizon, kept: list[Event], rnd: random.Random) -> Projection:
    q = Projection(EAGER)
    start_from(q, horizon)
    order = interleave(kept, rnd)
    q.apply(order)
    reload_all(q, order)
    return q


def assert_same(q: Projection, p: Projection, w) -> None:
    assert q.state_hash() == p.state_hash()
    nodes = [w.actor(n).id for n in ("req", "req2", "a", "b", "c")]
    assert [q.reputation(n) for n in nodes] == [p.reputation(n) for n in nodes]
    assert sorted([*q.jobs, *q.evicted]) == sorted([*p.jobs, *p.evicted])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 10_000),
    st.integers(20, 80),
    st.lists(st.floats(0, 1), min_size=1, max_size=2),
    st.randoms(use_true_random=False),
)
def test_the_kept_events_folded_from_the_horizon_give_the_state_after_pruning(
    seed, steps, cuts, rnd
):
    w = simulate(seed, steps)
    order = interleave(w.log, rnd)
    p = Projection(EAGER)
    p.apply(order)
    reload_all(p, order)
    hlcs = sorted(e.hlc for e in order)
    kept, horizon = order, None
    for at in sorted(cuts):
        kept, horizon, went = prune(p, kept, hlcs[int(at * (len(hlcs) - 1))], horizon)
        assert not went & {*p.jobs, *p.evicted}
        assert_same(folded_from(horizon, kept, rnd), p, w)
    assert horizon.events == len(order) - len(kept)


def test_pruning_takes_only_ended_jobs_let_go_of_and_keeps_reputations():
    w = simulate(7, 120)
    p = Projection(EAGER)
    p.apply(w.log)
    reload_all(p, w.log)
    before = {n: p.reputation(w.actor(n).id) for n in ("a", "b", "c")}
    live = set(p.jobs)
    cut = max(e.hlc for e in w.log)
    kept, horizon, went = prune(p, w.log, Hlc(cut.ms + 1), None)
    assert went  # something went
    assert not went & live  # nothing that was held
    assert all(not prunable(p, j) for j in went)
    assert {n: p.reputation(w.actor(n).id) for n in ("a", "b", "c")} == before
    assert sum(c + f for c, f in horizon.reputation.values()) > 0
    assert all(e.type == "NodeAnnounced" or e.job_id not in went for e in kept)
    assert any(e.type == "NodeAnnounced" for e in kept)  # announcements stay
    went_seqs = [(e.author, e.seq) for e in w.log if e.job_id in went]
    heads = {a: max(s for b, s in went_seqs if b == a) for a in horizon.heads}
    assert {a: h.seq for a, h in horizon.heads.items()} == heads


def test_a_horizon_packs_signs_and_refuses_what_its_node_did_not_sign():
    key, other = SigningKey.generate(), SigningKey.generate()
    w = simulate(3, 60)
    p = Projection(EAGER)
    p.apply(w.log)
    reload_all(p, w.log)
    _, horizon, _ = prune(p, w.log, Hlc(max(e.hlc for e in w.log).ms + 1), None)
    body = pack(horizon)
    assert unpack(body) == horizon
    me = bytes(key.verify_key)
    assert opened(body, sign(key, body), me) == horizon
    with pytest.raises(HorizonError, match="signature"):
        opened(body, sign(other, body), me)
    with pytest.raises(HorizonError, match="signature"):
        opened(body + b"\x00", sign(key, body), me)
    with pytest.raises(HorizonError, match="decode"):
        unpack(b"\x93\x01\x02\x03")
