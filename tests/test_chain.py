"""The pure chain check: events in, verdict out, no database."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.eventlog.chain import Head, Reason, check_chains
from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import Event, seal

NOW = 1_000_000
A = SigningKey(b"\x0a" * 32)
B = SigningKey(b"\x0b" * 32)


ANNOUNCEMENT = {"addresses": [], "roles": [], "labels": {}, "resources": {}, "executors": []}


def chain(key: SigningKey, n: int, start_ms: int = NOW - 10_000, tag: str = "") -> list[Event]:
    """`n` events of one author: its announcement, then job events."""
    events: list[Event] = []
    for seq in range(1, n + 1):
        prev = events[-1].id if events else None
        type_, body = ("JobCreated", {"job_id": f"{tag}{seq}", "spec": {}})
        if seq == 1:
            type_, body = "NodeAnnounced", ANNOUNCEMENT | {"labels": {"tag": tag}}
        events.append(seal(key, seq, prev, Hlc(start_ms + seq, 0), type_, body))
    return events


def head_of(event: Event) -> Head:
    return Head(event.seq, event.id, event.hlc)


def check(events, heads=None, held=None, **kwargs):
    return check_chains(heads or {}, held or {}, events, now_ms=NOW, max_skew_ms=1000, **kwargs)


def reasons(verdict) -> list[tuple[int, Reason]]:
    return [(r.seq, r.reason) for r in verdict.rejections]


def test_a_whole_chain_in_any_order_is_accepted():
    events = chain(A, 5)
    shuffled = events[:]
    random.Random(1).shuffle(shuffled)
    verdict = check(shuffled)
    assert verdict.accepted == events
    assert verdict.rejections == []
    assert verdict.heads[A.verify_key.encode()] == head_of(events[-1])


def test_gap_refuses_the_rest_of_that_chain_only():
    a, b = chain(A, 4), chain(B, 2)
    verdict = check([a[0], a[2], a[3], *b])
    assert verdict.accepted == [a[0], *b]
    assert reasons(verdict) == [(3, Reason.GAP), (4, Reason.GAP)]


def test_wrong_prev_is_refused_and_good_prefix_kept():
    a = chain(A, 3)
    bad = seal(A, 2, b"\x99" * 32, a[1].hlc, "JobCreated", {"job_id": "x", "spec": {}})
    verdict = check([a[0], bad, a[2]])
    assert verdict.accepted == [a[0]]
    assert reasons(verdict) == [(2, Reason.PREV_MISMATCH), (3, Reason.GAP)]


def test_first_event_must_not_name_a_prev():
    bad = seal(A, 1, b"\x01" * 32, Hlc(NOW, 0), "NodeAnnounced", ANNOUNCEMENT)
    assert reasons(check([bad])) == [(1, Reason.PREV_MISMATCH)]


def test_replayed_events_are_duplicates_not_errors():
    a = chain(A, 3)
    held = {(e.author, e.seq): e.id for e in a}
    verdict = check(a, heads={a[0].author: head_of(a[-1])}, held=held)
    assert verdict.accepted == []
    assert reasons(verdict) == [(1, Reason.DUPLICATE), (2, Reason.DUPLICATE), (3, Reason.DUPLICATE)]
    assert verdict.forks == []


def test_duplicates_inside_one_batch():
    a = chain(A, 2)
    verdict = check([a[0], a[0], a[1]])
    assert verdict.accepted == a
    assert reasons(verdict) == [(1, Reason.DUPLICATE)]


def test_fork_is_refused_and_kept_as_evidence():
    a = chain(A, 3)
    other = seal(A, 2, a[0].id, a[1].hlc, "JobCreated", {"job_id": "other", "spec": {}})
    held = {(e.author, e.seq): e.id for e in a}
    verdict = check([other], heads={a[0].author: head_of(a[-1])}, held=held)
    assert reasons(verdict) == [(2, Reason.FORK)]
    assert len(verdict.forks) == 1
    assert verdict.forks[0].event == other
    assert verdict.forks[0].existing_id == a[1].id


def test_fork_inside_one_batch_keeps_the_first():
    a = chain(A, 2)
    other = seal(A, 2, a[0].id, a[1].hlc, "JobCreated", {"job_id": "other", "spec": {}})
    verdict = check([a[0], a[1], other])
    assert verdict.accepted == a
    assert [f.existing_id for f in verdict.forks] == [a[1].id]


def test_hlc_must_increase_along_a_chain():
    first = seal(A, 1, None, Hlc(NOW, 5), "NodeAnnounced", ANNOUNCEMENT)
    same = seal(A, 2, first.id, Hlc(NOW, 5), "JobCreated", {"job_id": "2", "spec": {}})
    assert reasons(check([first, same])) == [(2, Reason.HLC_NOT_INCREASING)]


def test_events_from_too_far_in_the_future_are_refused():
    ok = seal(A, 1, None, Hlc(NOW + 1000, 0), "NodeAnnounced", ANNOUNCEMENT)
    ahead = seal(A, 2, ok.id, Hlc(NOW + 1001, 0), "JobCreated", {"job_id": "2", "spec": {}})
    verdict = check([ok, ahead])
    assert verdict.accepted == [ok]
    assert reasons(verdict) == [(2, Reason.CLOCK_SKEW)]


def test_non_members_are_refused():
    a, b = chain(A, 2), chain(B, 1)
    member = b[0].author
    verdict = check([*a, *b], is_member=lambda author: author == member)
    assert verdict.accepted == b
    assert reasons(verdict) == [(1, Reason.NOT_MEMBER), (2, Reason.NOT_MEMBER)]


def test_continues_from_held_head():
    a = chain(A, 4)
    verdict = check(a[2:], heads={a[0].author: head_of(a[1])})
    assert verdict.accepted == a[2:]


CHAINS = [chain(SigningKey(bytes([i + 1]) * 32), 6, tag=f"{i}-") for i in range(3)]


@settings(max_examples=50, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 6))
def test_delivery_order_and_batching_do_not_change_the_outcome(rng, batches):
    """Any interleaving in any batches, each batch checked against the heads so far, ends with
    every event accepted exactly once: the outcome depends on the events, not their arrival."""
    events = [e for c in CHAINS for e in c]
    deliveries = events + rng.sample(events, len(events) // 2)  # with replays
    rng.shuffle(deliveries)
    heads: dict[bytes, Head] = {}
    held: dict[tuple[bytes, int], bytes] = {}
    accepted: list[Event] = []
    pending = deliveries
    for _ in range(10_000):
        if not pending:
            break
        cut = max(1, len(pending) // batches)
        batch, pending = pending[:cut], pending[cut:]
        verdict = check(batch, heads=heads, held=held)
        assert not verdict.forks
        accepted += verdict.accepted
        heads.update(verdict.heads)
        held.update({(e.author, e.seq): e.id for e in verdict.accepted})
        pending += [e for e in batch if (e.author, e.seq) not in held]  # gaps: resent later
    assert sorted(accepted, key=lambda e: (e.author, e.seq)) == sorted(
        events, key=lambda e: (e.author, e.seq)
    )


def test_an_authors_first_event_must_be_its_announcement():
    announce = seal(A, 1, None, Hlc(NOW - 5, 0), "NodeAnnounced", ANNOUNCEMENT)
    job = seal(A, 2, announce.id, Hlc(NOW - 4, 0), "JobCreated", {"job_id": "x", "spec": {}})
    assert check([announce, job]).accepted == [announce, job]
    assert reasons(check([job])) == [(2, Reason.GAP)]
    early = seal(B, 1, None, Hlc(NOW - 5, 0), "JobCreated", {"job_id": "x", "spec": {}})
    assert reasons(check([early])) == [(1, Reason.NOT_ANNOUNCED)]
    admitted = seal(B, 1, None, Hlc(NOW - 5, 0), "NodeAdmitted", {"node": bytes(32)})
    assert check([admitted]).accepted == [admitted]  # an authority's chain opens with a verdict
