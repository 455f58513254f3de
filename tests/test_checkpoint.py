"""Checkpoints of the projection: starting from one and folding the rest gives the state a
fold of the whole log gives (property tests), and a checkpoint that does not match is refused."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_histories import _history, raw_event
from test_projection import indexes, interleave, simulate
from test_retention import EAGER, decisions, derived, reload_all

from edgebac.eventlog.encoding import Event
from edgebac.scheduler import checkpoint
from edgebac.scheduler.checkpoint import CheckpointError, Packed
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.retention import Retention

RETENTIONS = st.sampled_from([None, EAGER, Retention(ended_ms=2_000, ended_max=1), Retention()])


class Stored:
    """What the log's checkpoint tables hold, kept as `EventLog.write_checkpoint` keeps them:
    the newest core, and ended rows updated by each write (all replaced by a full one)."""

    def __init__(self) -> None:
        self.packed: Packed | None = None
        self.rows: dict[str, bytes] = {}

    def write(self, packed: Packed) -> None:
        if packed.full:
            self.rows.clear()
        for job_id in packed.deleted:
            self.rows.pop(job_id, None)
        self.rows.update(packed.rows)
        self.packed = packed

    def load(self, retention: Retention | None) -> Projection:
        assert self.packed is not None
        rows = sorted(self.rows.items())  # SQLite gives them by job id, not as they were let go
        return checkpoint.load(self.packed.core, rows, self.packed.state_hash, retention)


def fold(p: Projection, events: list[Event], held: list[Event], rnd: random.Random) -> None:
    """What the runner does: apply in chunks, then reload from the log (what arrived so far)."""
    i = 0
    while i < len(events):
        n = rnd.randint(1, 5)
        held.extend(events[i : i + n])
        p.apply(events[i : i + n])
        reload_all(p, held)
        i += n


def assert_same(loaded: Projection, taken: Projection) -> None:
    """Everything a projection holds, state and bookkeeping alike, is back as it was."""
    assert loaded.state_hash() == taken.state_hash()
    assert loaded.to_dict() == taken.to_dict()
    assert loaded.evicted == taken.evicted  # summaries in full (the hash has their digests)
    assert loaded.executions == taken.executions
    assert loaded.nodes == taken.nodes
    assert loaded.evidence() == taken.evidence()
    assert loaded.needs_reload == taken.needs_reload
    assert loaded._late_lost == taken._late_lost
    assert loaded._buckets == taken._buckets
    assert loaded.announcements._by_author == taken.announcements._by_author
    assert (loaded._seen._upto, loaded._seen._above) == (taken._seen._upto, taken._seen._above)
    assert loaded._newest == taken._newest
    assert sorted(loaded.live) == sorted(taken.live)
    assert loaded._ended_at == taken._ended_at
    for node in {*loaded.nodes, *taken.nodes}:
        assert loaded.claimed(node) == taken.claimed(node)
        assert dict(loaded.active_on(node)) == dict(taken.active_on(node))
        assert loaded.reputation(node) == taken.reputation(node)


def run_with_checkpoints(
    order: list[Event], cuts: list[int], retention: Retention | None, rnd: random.Random
) -> Projection:
    """Fold `order`, taking a checkpoint at each cut; at some, restart from it (load it and go
    on from there, as a node does), at others go on and take the next one incrementally."""
    p, stored, held = Projection(retention), Stored(), []
    full = True  # the first one, and the first after a refold, rewrites every row
    for pos in sorted({cut % (len(order) + 1) for cut in cuts}):
        fold(p, order[len(held) : pos], held, rnd)
        stored.write(checkpoint.pack(checkpoint.snapshot(p, full)))
        full = False
        if rnd.random() < 0.7:
            before, p = p, stored.load(retention)
            assert_same(p, before)
            # Events before the cut may arrive again (the runner listens before it reads).
            p.apply(held[len(held) - rnd.randint(0, min(5, len(held))) :])
            reload_all(p, held)
    fold(p, order[len(held) :], held, rnd)
    return p


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32),
    st.integers(10, 80),
    RETENTIONS,
    st.lists(st.integers(0, 10_000), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_starting_from_checkpoints_folds_like_the_whole_log(seed, steps, retention, cuts, rnd):
    w = simulate(seed, steps)
    order = interleave(w.log, rnd)
    whole = Projection.from_events(order)
    p = run_with_checkpoints(order, cuts, retention, rnd)
    assert p.state_hash() == whole.state_hash()
    assert p.evidence() == whole.evidence()
    assert sorted([*p.jobs, *p.evicted]) == sorted(whole.jobs)
    assert p.executions.keys() == whole.executions.keys()
    indexes(p)  # the rebuilt indexes agree with the held jobs
    nodes = [*whole.nodes, *(b.node for j in whole.jobs.values() for b in j.bids.values())]
    assert derived(p, nodes) == derived(whole, nodes)
    assert decisions(p, w) == decisions(whole, w)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0, 0, 1, 2, 3]), min_size=4, max_size=4),
    st.lists(raw_event, max_size=40),
    RETENTIONS,
    st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
    st.randoms(use_true_random=False),
)
def test_checkpoints_of_rule_breaking_histories_keep_state_and_evidence(
    roles, raw, retention, cuts, rnd
):
    events = _history(roles, raw)
    whole = Projection.from_events(events)
    p = run_with_checkpoints(interleave(events, rnd), cuts, retention, rnd)
    assert p.state_hash() == whole.state_hash()
    if retention is None:  # a job let go of judges no more events that sort after its end
        assert p.evidence() == whole.evidence()  # (a second JobCreated, say): not a checkpoint's
    indexes(p)


def checkpointed(retention: Retention | None = EAGER) -> tuple[Projection, Stored]:
    w = simulate(7, 60)
    p, stored = Projection(retention), Stored()
    fold(p, w.log, [], random.Random(1))
    stored.write(checkpoint.pack(checkpoint.snapshot(p, True)))
    assert stored.rows  # some jobs ended and were let go of: rows of their own
    return p, stored


def test_a_loaded_checkpoint_is_the_state_it_was_taken_of():
    p, stored = checkpointed()
    assert_same(stored.load(EAGER), p)


def test_a_state_hash_that_does_not_match_is_refused():
    _, stored = checkpointed()
    assert stored.packed is not None
    stored.packed.state_hash = "0" * 64
    with pytest.raises(CheckpointError, match="state hash"):
        stored.load(EAGER)


def test_a_lost_ended_row_changes_the_state_hash_and_is_refused():
    _, stored = checkpointed()
    stored.rows.pop(min(stored.rows))
    with pytest.raises(CheckpointError, match="state hash"):
        stored.load(EAGER)


def test_a_body_of_another_shape_is_refused_not_trusted():
    _, stored = checkpointed()
    assert stored.packed is not None
    core = msgpack.unpackb(stored.packed.core, strict_map_key=False)
    core["nodes"] = [values[:-1] for values in core["nodes"]]  # a field fewer: another version
    stored.packed.core = msgpack.packb(core, use_bin_type=True)
    with pytest.raises(CheckpointError, match="a NodeInfo of 8 fields, not 9"):
        stored.load(EAGER)
    stored.packed.core = b"\xc1 not msgpack"
    with pytest.raises(CheckpointError, match="does not decode"):
        stored.load(EAGER)


def test_the_format_names_the_fields_it_saves():
    """A field added to a saved class changes FORMAT, so older checkpoints are refused."""
    number, shape = checkpoint.FORMAT.split(":")
    assert number == str(checkpoint.FORMAT_NUMBER)
    assert len(shape) == 16
    assert "Execution:id,job_id,node" in checkpoint._SHAPE


def test_taking_a_snapshot_resets_what_changed_and_a_checkpoint_never_runs_code():
    p, stored = checkpointed()
    assert p.ended_changed == set()  # the snapshot took them, and tracks them from now on
    assert Projection(EAGER).ended_changed is None  # not before: a fold alone keeps no list
    assert stored.packed is not None
    for blob in [stored.packed.core, *stored.rows.values()]:
        msgpack.unpackb(blob, strict_map_key=False, ext_hook=_no_ext)  # plain data only


def _no_ext(code: int, data: bytes) -> None:
    raise AssertionError(f"extension type {code} in a checkpoint")
