"""Late joining, pure part (`eventlog.adopt`, `gossip.late.decide`): what a joiner accepts
as the kept events below its seeds' horizon, and when it adopts, syncs, waits or refuses."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebac.eventlog.adopt import Summary, comparable, kept_digest, problems
from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import seal
from edgebac.eventlog.horizon import Head, Horizon, pack
from edgebac.gossip.late import Offer, decide, parse_cursor, parse_offer
from tests.netfix import Author


def pruned_history(authors: int = 3, rnd: random.Random | None = None):
    """Each author: its announcement (kept), notes (the odd ones pruned), the last pruned: a
    horizon whose heads are each chain's last event, and the kept events below them."""
    rnd = rnd or random.Random(1)
    kept, heads, heard = [], {}, {}
    for _ in range(authors):
        author = Author()
        for index in range(rnd.randrange(2, 9)):
            author.next(f"n{index}")
        chain = author.events
        heads[author.id] = Head(chain[-1].seq, chain[-1].id)
        heard[author.id] = chain[-1].hlc
        kept += [chain[0]] + [e for e in chain[1:-1] if e.seq % 2 == 0]
    horizon = Horizon(Hlc(10, 0), 0, 0, heads, heard, {})
    return horizon, kept


def summary_of(horizon, kept) -> Summary:
    return Summary(
        comparable(horizon), kept_digest((e.author, e.seq, e.id) for e in kept), len(kept)
    )


@given(st.integers(1, 6), st.randoms(use_true_random=False))
def test_exactly_the_kept_events_are_accepted_in_any_order(authors, rnd):
    horizon, kept = pruned_history(authors, rnd)
    summary = summary_of(horizon, kept)
    shuffled = list(kept)
    rnd.shuffle(shuffled)
    assert problems(horizon, shuffled, summary) == []


def test_anything_else_is_refused_with_its_reason():
    horizon, kept = pruned_history(3)
    summary = summary_of(horizon, kept)
    first_author = kept[0].author
    lacking = [e for e in kept if e is not kept[1]]
    assert "kept events the peers agreed on" in " ".join(problems(horizon, lacking, summary))
    doubled = [*kept, kept[0]]
    assert any("given twice" in p for p in problems(horizon, doubled, summary))
    other = Author()
    stranger = problems(horizon, [*kept, other.announcement], summary)
    assert any("is not below its head" in p for p in stranger)
    no_announcement = [e for e in kept if not (e.author == first_author and e.seq == 1)]
    found = problems(horizon, no_announcement, summary_of(horizon, no_announcement))
    assert any("first kept event is not its announcement" in p for p in found)
    # Another horizon (a reputation a liar added) is not the one agreed on.
    inflated = Horizon(horizon.cut, 0, 0, horizon.heads, horizon.heard, {first_author: (99, 0)})
    assert any("not the one the peers agreed" in p for p in problems(inflated, kept, summary))
    # Adjacent kept events must link, and go forward in time.
    author = Author()
    two = author.next("two")
    unlinked = seal(author.key, 3, b"\0" * 32, author.clock.now(), "Note", {"text": "3"})
    backwards = seal(author.key, 4, unlinked.id, Hlc(1, 0), "Note", {"text": "4"})
    chain = [author.announcement, two, unlinked, backwards]
    horizon = Horizon(Hlc(1, 0), 0, 0, {author.id: Head(9, b"\1" * 32)}, {author.id: two.hlc}, {})
    found = problems(horizon, chain, summary_of(horizon, chain))
    assert any("seq 3 does not name seq 2" in p for p in found), found
    assert any("seq 4: its hlc is not after" in p for p in found), found


def test_the_cut_is_not_compared():
    horizon, _ = pruned_history(2)
    later = Horizon(Hlc(99_999, 0), horizon.events, horizon.jobs, horizon.heads, horizon.heard, {})
    assert comparable(later) == comparable(horizon)


def offer(summary: Summary | None) -> Offer:
    return Offer(b"body" if summary else None, summary)


S1 = Summary(b"h1", b"k" * 32, 3)
S2 = Summary(b"h2", b"k" * 32, 3)


@pytest.mark.parametrize(
    ("offers", "quorum", "kind"),
    [
        ({}, 0, "wait"),
        ({"a": offer(None), "b": offer(None)}, 0, "sync"),
        ({"a": offer(S1), "b": offer(S1)}, 0, "adopt"),
        ({"a": offer(S1)}, 0, "adopt"),  # the only seed reached
        ({"a": offer(S1), "b": offer(S2)}, 0, "disagree"),
        ({"a": offer(S1), "b": offer(None)}, 0, "disagree"),
        ({"a": offer(S1), "b": offer(None)}, 1, "adopt"),
        ({"a": offer(S1), "b": offer(S2), "c": offer(S1)}, 2, "adopt"),
        ({"a": offer(S1), "b": offer(S2), "c": offer(S1)}, 3, "disagree"),
        ({"a": offer(S1), "b": Offer(None, None, "garbage")}, 0, "disagree"),
        ({"a": offer(None), "b": Offer(None, None, "garbage")}, 0, "disagree"),
        ({"a": offer(None), "b": Offer(None, None, "garbage")}, 1, "sync"),
        ({"a": offer(S1), "b": Offer(None, None, "garbage")}, 1, "adopt"),
    ],
)
def test_what_a_joiner_does_with_its_seeds_answers(offers, quorum, kind):
    decision = decide(offers, quorum)
    assert decision.kind == kind, decision
    if kind == "adopt":
        assert decision.offer is not None
        assert decision.offer.summary == S1
        assert all(offers[seed].summary == S1 for seed in decision.seeds)
    if kind == "disagree":
        assert "needed" in decision.why


@pytest.mark.parametrize(
    "reply",
    [
        None,
        [],
        {"t": "diff"},
        {"t": "horizon", "body": b"x"},
        {"t": "horizon", "body": b"x", "kept": b"k" * 32, "count": 1},  # does not decode
        {"t": "horizon", "body": 5, "kept": b"k" * 32, "count": 1},
        {"t": "horizon", "body": b"x", "kept": b"k", "count": 1},
        {"t": "horizon", "body": b"x", "kept": b"k" * 32, "count": -1},
        {"t": "horizon", "body": b"x", "kept": b"k" * 32, "count": True},
        {"t": "horizon", "body": b"x", "kept": b"k" * 32, "count": 10**9},
        {"t": "horizon", "body": b"x", "kept": b"k" * 32, "count": 1, "moving": True},
    ],
)
def test_a_garbled_horizon_answer_is_refused(reply):
    with pytest.raises(ValueError):  # noqa: PT011 - each says its own why
        parse_offer(reply)


def test_a_seed_whose_cut_moves_in_a_moment_is_asked_again():
    """A horizon taken just before the seeds' cut moves could be pruned past before the
    joiner's first sync is done: it is taken only with a margin (10 s, or half the period)."""
    horizon, kept = pruned_history(2)
    body = pack(horizon)
    reply = {"t": "horizon", "body": body, "kept": b"k" * 32, "count": len(kept)}
    assert parse_offer(reply).summary is not None  # a seed that does not say: as before
    for move_in, period, taken in [
        (9_000, 600_000, False),
        (11_000, 600_000, True),
        (400, 1_000, False),
        (600, 1_000, True),
    ]:
        answer = dict(reply, move_in_ms=move_in, period_ms=period)
        if taken:
            assert parse_offer(answer).body == body
        else:
            with pytest.raises(ValueError, match="its cut moves in"):
                parse_offer(answer)


def test_cursors_are_checked():
    author = bytes(range(32))
    assert parse_cursor([author, 4]) == (author, 4)
    for bad in (None, [author], [b"x", 1], [author, -1], [author, True], [author, "1"], "x"):
        assert parse_cursor(bad) is None


async def test_a_log_adopts_once_then_chains_go_on_from_the_heads(tmp_path):
    """Adopted into an empty log with the horizon, signed by its own key; the next event of a
    chain must name its head's id; a second adoption, or one into a log holding anything, is
    refused and writes nothing."""
    from nacl.signing import SigningKey

    from edgebac.eventlog.adopt import AdoptRefused
    from edgebac.eventlog.clock import HybridClock
    from edgebac.eventlog.horizon import pack
    from edgebac.eventlog.kept import kept_page
    from edgebac.eventlog.store import EventLog

    author = Author()
    for index in range(4):
        author.next(f"n{index}")
    chain = author.events  # kept: 1, 3; pruned: 2, 4, 5 (the head)
    kept = [chain[0], chain[2]]
    heads = {author.id: Head(5, chain[4].id)}
    horizon = Horizon(Hlc(10, 0), 3, 1, heads, {author.id: chain[4].hlc}, {})
    summary = summary_of(horizon, kept)
    log = await EventLog.open(tmp_path / "events.db", HybridClock(60_000), SigningKey.generate())
    try:
        with pytest.raises(AdoptRefused, match="kept events the peers agreed on"):
            await log.adopt(pack(horizon), summary, [r.raw for r in kept[:1]])
        assert await log.count() == 0
        assert await log.adopt(pack(horizon), summary, [e.raw for e in kept]) == 2
        assert log.version_vector() == {author.id: 5}
        found = await log.kept_summary()
        assert found is not None
        assert found[1] == summary  # it serves what it adopted: it can be a seed itself
        page = await log._writer.run(kept_page, log.author, None, 10, 1 << 20)
        assert page == ([e.raw for e in kept], None)
        with pytest.raises(AdoptRefused, match="not empty"):
            await log.adopt(pack(horizon), summary, [e.raw for e in kept])
        report = await log.ingest([author.next("6").raw])
        assert not report.errors
        assert log.version_vector() == {author.id: 6}
        assert await log.count() == 3
        stranger = Author()
        forked = seal(stranger.key, 2, b"\0" * 32, stranger.clock.now(), "Note", {"text": "x"})
        refused = await log.ingest([stranger.announcement.raw, forked.raw])
        assert len(refused.errors) == 1
    finally:
        await log.close()


class _Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def wall_ms(self) -> int:
        return self.ms


class _Log:
    def __init__(self, ms: int) -> None:
        self.clock = _Clock(ms)
        self.looks = 0
        self.horizon_moving = False

    async def prunable(self, cut, limit):
        self.looks += 1
        return []


class _Checkpoints:
    busy = False

    def can_take(self) -> bool:
        return not self.busy


async def test_nodes_with_one_retention_cut_alike_and_look_when_the_cut_moves():
    """Cuts are retention ago rounded down to the pruner's period: two nodes looking a few
    seconds apart (or with clocks a little apart) prune at the same cut; a look is due when
    the cut moves, and one that could not take a checkpoint is not counted as done."""
    from edgebac.node.pruning import LogPruner

    hour = 3_600_000
    a, b = _Log(10 * hour + 1_000), _Log(10 * hour + 590_000)
    pa, pb = LogPruner(a, 3600, None), LogPruner(b, 3600, None)  # type: ignore[arg-type]
    assert pa.cut() == pb.cut() == Hlc(9 * hour, 0)
    checkpoints = _Checkpoints()
    assert pa.due()
    assert a.horizon_moving  # until a look finds nothing due, joiners are told to wait
    await pa.run(lambda: None, checkpoints)  # type: ignore[arg-type]
    assert a.looks == 1
    assert not a.horizon_moving
    assert not pa.due()
    a.clock.ms += 600_000  # the cut moved on: look at once
    assert pa.due()
    checkpoints.busy = True
    await pa.run(lambda: None, checkpoints)  # type: ignore[arg-type]
    assert a.looks == 1
    assert pa.due()  # still due: the busy checkpoint kept it from looking


class _Seeds:
    """A seed's gossip answers, as `gossip.late` reads them (the transport is the I/O edge)."""

    def __init__(self, horizon, summary, pages) -> None:
        self.seeds = ["127.0.0.1:9"]
        self.transport = self
        self.answers = {
            "horizon": {
                "t": "horizon",
                "body": pack(horizon),
                "kept": summary.kept,
                "count": summary.count,
            },
            "kept": {"t": "kept", "events": pages, "next": None},
        }

    async def request(self, address, message):
        return b"", self.answers[message["t"]]


@pytest.mark.parametrize("sent_all", [True, False])
async def test_a_node_behind_its_seeds_horizon_starts_again_or_stays_as_it_was(tmp_path, sent_all):
    """Behind: it holds 3 of a chain its seeds pruned to 5. With the kept events it gets a new
    log from the horizon (the old one set aside) with its own chain carried over; when what
    the seed sends is not what it agreed on, the old log is put back as it was."""
    from nacl.signing import SigningKey

    from edgebac.eventlog.clock import HybridClock
    from edgebac.eventlog.store import EventLog
    from edgebac.node.rejoin import rejoin_if_behind
    from tests.announce import announcement

    other = Author()
    for index in range(4):
        other.next(f"n{index}")
    key = SigningKey.generate()
    old = await EventLog.open(tmp_path / "events.db", HybridClock(60_000), key)
    await old.append([announcement()])
    await old.ingest([e.raw for e in other.events[:3]])
    horizon = Horizon(
        Hlc(10, 0),
        2,
        1,
        {other.id: Head(5, other.events[4].id)},
        {other.id: other.events[4].hlc},
        {},
    )
    kept = [other.events[0]]
    seeds = _Seeds(horizon, summary_of(horizon, kept), [e.raw for e in kept] if sent_all else [])
    said: list[str] = []
    log = await rejoin_if_behind(old, seeds, 0, key, said.append)  # type: ignore[arg-type]
    try:
        me = bytes(key.verify_key)
        if sent_all:
            assert log is not old
            assert log.version_vector() == {me: 1, other.id: 5}
            assert await log.count() == 2  # the kept announcement and its own
            assert list(tmp_path.glob("events-behind-*.db"))
            assert "its log is kept as" in said[0]
        else:
            assert log.version_vector() == {me: 1, other.id: 3}
            assert await log.count() == 4
            assert not list(tmp_path.glob("events-behind-*.db"))
            assert "stays as it is" in said[0]
    finally:
        await log.close()
