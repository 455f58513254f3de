"""Checkpoints of the projection: starting from one and folding the rest gives the state a
fold of the whole log gives (property tests: the ended jobs read back from the rows in SQLite,
through the overlay of what changed since), and a checkpoint that does not match is refused."""

from __future__ import annotations

import random
import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_histories import _history, raw_event
from test_projection import indexes, interleave, simulate
from test_retention import EAGER, decisions, derived, reload_all

from edgebac.eventlog.checkpoints import CHECKPOINT_SCHEMA, EndedReader, write_checkpoint
from edgebac.eventlog.encoding import Event
from edgebac.node.checkpoints import to_write
from edgebac.scheduler import checkpoint
from edgebac.scheduler.checkpoint import CheckpointError
from edgebac.scheduler.ended import CREATED, EMPTY, ID, Listing, Owner, sort_key
from edgebac.scheduler.ended_rows import StoredEnded
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.retention import Retention

RETENTIONS = st.sampled_from([None, EAGER, Retention(ended_ms=2_000, ended_max=1), Retention()])


class Stored:
    """The log's checkpoint tables in a SQLite file of their own, written by the log's own
    `write_checkpoint` (beside a one-row `events` table: the position it checks) and read back
    through `EndedReader`s, as a node reads them."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "events.db"
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.executescript(
            "CREATE TABLE events (pos INTEGER PRIMARY KEY, id BLOB NOT NULL);"
            f"INSERT INTO events VALUES (1, x'01'); {CHECKPOINT_SCHEMA}"
        )
        self.readers: list[StoredEnded] = []

    def rows(self) -> StoredEnded:
        self.readers.append(StoredEnded(EndedReader(self.path)))
        return self.readers[-1]

    def write(self, p: Projection, full: bool) -> str:
        """Take a checkpoint of `p` as `node.checkpoints` does: freeze, write, commit."""
        snapshot = checkpoint.snapshot(p, full)
        state_hash = write_checkpoint(self.conn, 1, 0, lambda: to_write(snapshot))
        p.evicted.committed(self.rows() if p.evicted.backing is EMPTY else None)
        return state_hash

    def load(self, retention: Retention | None) -> Projection:
        state_hash, body = self.conn.execute("SELECT state_hash, body FROM checkpoint").fetchone()
        return checkpoint.load(body, self.rows(), state_hash, retention)

    def close(self) -> None:
        for rows in self.readers:
            rows.close()
        self.conn.close()


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
    stored: Stored,
    order: list[Event],
    cuts: list[int],
    retention: Retention | None,
    rnd: random.Random,
) -> Projection:
    """Fold `order`, taking a checkpoint at each cut; at some, restart from it (load it and go
    on from there, as a node does), at others go on and take the next one incrementally."""
    p, held = Projection(retention), []
    full = True  # the first one, and the first after a refold, rewrites every row
    for pos in sorted({cut % (len(order) + 1) for cut in cuts}):
        fold(p, order[len(held) : pos], held, rnd)
        assert stored.write(p, full) == p.state_hash()
        full = False
        if rnd.random() < 0.7:
            before, p = p, stored.load(retention)
            assert_same(p, before)
            # Events before the cut may arrive again (the runner listens before it reads).
            p.apply(held[len(held) - rnd.randint(0, min(5, len(held))) :])
            reload_all(p, held)
    fold(p, order[len(held) :], held, rnd)
    return p


def listed(p: Projection, asked: Listing) -> tuple[list[str], int, bool]:
    page = p.evicted.listing(p.jobs.values(), asked)
    return [job.id for job in page.items], page.total, page.more


def walked(p: Projection, asked: Listing, rnd: random.Random) -> tuple[list[str], set[int]]:
    """Every page from `asked`'s on, each starting after the last job of the one before (as
    a client handing back `next`), with random page sizes: the ids, and the totals said."""
    ids, totals = [], set()
    while True:
        page = p.evicted.listing(p.jobs.values(), asked)
        ids += [job.id for job in page.items]
        totals.add(page.total)
        if not page.more:
            return ids, totals
        assert len(page.items) == asked.limit  # a page short of its limit is the last
        after = sort_key(asked.order, page.items[-1])
        asked = replace(asked, offset=0, after=after, limit=rnd.randint(1, 5))


def assert_lists_alike(p: Projection, whole: Projection, rnd: random.Random) -> None:
    """Pages of held and stored jobs together are the pages of the whole fold's jobs."""
    clients = sorted({job.client for job in whole.jobs.values() if job.client is not None})
    owners = [Owner(), Owner(everyone=False), Owner(False, b"someone else", "a name")]
    owners += [Owner(False, client) for client in clients[:1]]  # a caller of scope own
    n = len(whole.jobs)
    for order, desc, owner in [
        (o, d, w) for o in (CREATED, ID) for d in (True, False) for w in owners
    ]:
        for offset, limit in [(0, 50), (0, 1), (rnd.randint(0, n + 1), rnd.randint(1, 4))]:
            asked = Listing(order, desc, owner, offset, limit)
            assert listed(p, asked) == listed(whole, asked), asked
        everything, total, _ = listed(whole, Listing(order, desc, owner, 0, n + 1))
        offset = rnd.randint(0, n)  # pages by cursor from the first, or from a page by offset
        for start in (Listing(order, desc, owner, 0, 1), Listing(order, desc, owner, offset, 3)):
            ids, totals = walked(p, start, rnd)
            assert ids == everything[start.offset :], start
            assert totals == {total}


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
    with tempfile.TemporaryDirectory() as folder:
        stored = Stored(Path(folder))
        try:
            p = run_with_checkpoints(stored, order, cuts, retention, rnd)
            check_against_whole(p, whole, w, rnd)
        finally:
            stored.close()


def check_against_whole(p: Projection, whole: Projection, w, rnd: random.Random) -> None:
    assert p.state_hash() == whole.state_hash()
    assert_lists_alike(p, whole, rnd)
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
    with tempfile.TemporaryDirectory() as folder:
        stored = Stored(Path(folder))
        try:
            p = run_with_checkpoints(stored, interleave(events, rnd), cuts, retention, rnd)
            assert p.state_hash() == whole.state_hash()
            if retention is None:  # a job let go of judges no more events after its end (a
                assert p.evidence() == whole.evidence()  # second JobCreated): not a checkpoint's
            indexes(p)
            assert_lists_alike(p, whole, rnd)
        finally:
            stored.close()


@pytest.fixture
def stored(tmp_path):
    stored = Stored(tmp_path)
    yield stored
    stored.close()


def checkpointed(stored: Stored, retention: Retention | None = EAGER) -> Projection:
    w = simulate(7, 60)
    p = Projection(retention)
    fold(p, w.log, [], random.Random(1))
    stored.write(p, True)
    assert stored.conn.execute("SELECT COUNT(*) FROM ended_jobs").fetchone()[0]  # rows of their own
    return p


def test_a_loaded_checkpoint_is_the_state_it_was_taken_of(stored):
    p = checkpointed(stored)
    assert_same(stored.load(EAGER), p)


def test_a_state_hash_that_does_not_match_is_refused(stored):
    checkpointed(stored)
    stored.conn.execute("UPDATE checkpoint SET state_hash = ?", ("0" * 64,))
    with pytest.raises(CheckpointError, match="state hash"):
        stored.load(EAGER)


@pytest.mark.parametrize(
    "change",
    [
        "DELETE FROM ended_jobs WHERE job_id = (SELECT MIN(job_id) FROM ended_jobs)",
        "UPDATE ended_jobs SET digest = X'00' WHERE job_id = (SELECT MIN(job_id) FROM ended_jobs)",
    ],
)
def test_a_lost_or_changed_ended_row_changes_the_state_hash_and_is_refused(stored, change):
    checkpointed(stored)
    stored.conn.execute(change)
    with pytest.raises(CheckpointError, match="state hash"):
        stored.load(EAGER)


def test_a_body_of_another_shape_is_refused_not_trusted(stored):
    checkpointed(stored)
    (body,) = stored.conn.execute("SELECT body FROM checkpoint").fetchone()
    core = msgpack.unpackb(body, strict_map_key=False)
    core["nodes"] = [values[:-1] for values in core["nodes"]]  # a field fewer: another version
    stored.conn.execute("UPDATE checkpoint SET body = ?", (msgpack.packb(core, use_bin_type=True),))
    with pytest.raises(CheckpointError, match="a NodeInfo of 8 fields, not 9"):
        stored.load(EAGER)
    stored.conn.execute("UPDATE checkpoint SET body = ?", (b"\xc1 not msgpack",))
    with pytest.raises(CheckpointError, match="does not decode"):
        stored.load(EAGER)


def test_the_format_names_the_fields_it_saves():
    """A field added to a saved class changes FORMAT, so older checkpoints are refused."""
    number, shape = checkpoint.FORMAT.split(":")
    assert number == str(checkpoint.FORMAT_NUMBER)
    assert len(shape) == 16
    assert "Execution:id,job_id,node" in checkpoint._SHAPE


def test_a_checkpoint_empties_the_overlay_and_never_runs_code(stored):
    p = checkpointed(stored)
    assert p.evicted._current == {}
    assert p.evicted._frozen == {}
    assert len(p.evicted) == stored.conn.execute("SELECT COUNT(*) FROM ended_jobs").fetchone()[0]
    blobs = [row for (row,) in stored.conn.execute("SELECT body FROM checkpoint")]
    for table in ("ended_jobs", "ended_executions"):
        blobs += [row for (row,) in stored.conn.execute(f"SELECT row FROM {table}")]
    for blob in blobs:
        msgpack.unpackb(blob, strict_map_key=False, ext_hook=_no_ext)  # plain data only


def test_the_state_hash_is_the_one_of_packing_one_map():
    """Streamed digests give the bytes of today's canonical map: the hash did not change."""
    import hashlib

    from edgebac.eventlog.encoding import canonical_body
    from edgebac.scheduler.retention import job_digest

    w = simulate(3, 60)
    p = Projection(EAGER)
    fold(p, w.log, [], random.Random(2))
    assert len(p.evicted)
    assert len(p.jobs)
    digests = {job_id: d for job_id, d in p.evicted.digests()}
    digests |= {job_id: job_digest(job) for job_id, job in p.jobs.items()}
    _held, shared = p.hash_parts()
    packed = msgpack.packb(canonical_body({"jobs": digests, **shared}), use_bin_type=True)
    assert p.state_hash() == hashlib.sha256(packed).hexdigest()


def _no_ext(code: int, data: bytes) -> None:
    raise AssertionError(f"extension type {code} in a checkpoint")


@settings(max_examples=200, deadline=None)
@given(st.sets(st.text("0123456789abcdef", min_size=1, max_size=6), max_size=60), st.randoms())
def test_streamed_digests_merged_with_the_held_hash_as_one_map(ids, rnd):
    """However the jobs split between ended rows and held ones, the streamed hash is the
    sha256 of packing the one map (the held ones merged in by hand, as heapq.merge would)."""
    import hashlib

    from edgebac.eventlog.encoding import canonical_body
    from edgebac.scheduler.retention import hash_state

    digests = {f"j-{i}": bytes([rnd.randrange(256)]) * 32 for i in ids}
    held = {i: d for i, d in digests.items() if rnd.random() < 0.3}
    ended = sorted((i, d) for i, d in digests.items() if i not in held)
    shared = {"nodes": {"n": {"a": 1}}, "reputation": {}}
    packed = msgpack.packb(canonical_body({"jobs": digests, **shared}), use_bin_type=True)
    assert hash_state(iter(ended), len(ended), (held, shared)) == hashlib.sha256(packed).hexdigest()
