"""Thin links (#17), the pure parts: held events known from their first bytes, what a push may
carry, leases on buckets, compressed bodies inside the seal with a hard cap on inflating."""

from __future__ import annotations

import os
import zlib
from types import SimpleNamespace

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from edgebac.eventlog.chain import Head, Reason
from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import decode, peek_key, seal
from edgebac.gossip.envelope import ZLIB_TAG, Envelope, EnvelopeError, deflate, inflate
from edgebac.gossip.thin import SWEEP_AT, Leases, Recent, my_share, split_held
from edgebac.gossip.vectors import make_mask
from edgebac.gossip.zdict import ZDICT_V1

KEY = SigningKey.generate()
CLOCK = HybridClock(60_000)


def event(seq: int, text: str = "note", key: SigningKey = KEY):
    return seal(key, seq, None if seq == 1 else bytes(32), CLOCK.now(), "Note", {"text": text})


@given(st.integers(1, 2**64 - 1), st.text(max_size=300))
def test_peek_reads_what_decode_reads(seq, text):
    e = event(seq, text)
    assert peek_key(e.raw) == (e.author, e.seq) == (decode(e.raw).author, decode(e.raw).seq)


def test_peek_of_a_large_event_reads_past_a_bin32_header():
    e = event(7, "x" * 70_000)
    assert e.raw[1] == 0xC6
    assert peek_key(e.raw) == (e.author, 7)


@given(st.binary(max_size=120))
def test_peek_never_raises_on_garbage(data):
    key = peek_key(data)
    assert key is None or (len(key[0]) == 32 and key[1] >= 0)


@pytest.mark.parametrize(
    "raw", [b"", b"\x92", msgpack.packb([b"x" * 50, b"s" * 64]), msgpack.packb([1, 2])]
)
def test_peek_says_nothing_of_what_is_not_laid_out_as_an_event(raw):
    assert peek_key(raw) is None


def heads_of(*events):
    heads = {e.author: Head(e.seq, e.id, e.hlc) for e in events}
    return {a: h.seq for a, h in heads.items()}, heads.get


def test_held_events_are_dropped_by_author_and_seq_and_new_ones_kept():
    one, two, three = event(1), event(2), event(3)
    vv, head = heads_of(two)  # we hold 1..2, head is `two`
    fresh, held = split_held([one.raw, two.raw, three.raw], vv, head)
    assert fresh == [three.raw]
    assert [r.reason for r in held] == [Reason.DUPLICATE, Reason.DUPLICATE]


def test_a_second_event_at_the_head_goes_on_to_be_recorded_as_a_fork():
    held_two, fork_two = event(2, "mine"), event(2, "other")
    vv, head = heads_of(held_two)
    fresh, held = split_held([fork_two.raw], vv, head)
    assert fresh == [fork_two.raw]
    assert held == []


def test_unknown_authors_and_unreadable_bytes_go_on_to_full_checks():
    stranger = event(5, key=SigningKey.generate())
    vv, head = heads_of(event(9))
    fresh, held = split_held([stranger.raw, b"garbage"], vv, head)
    assert fresh == [stranger.raw, b"garbage"]
    assert held == []


def test_a_push_carries_only_what_came_within_the_window_and_our_own():
    me, other = bytes(32), b"\x01" * 32
    recent = Recent(me, window_ms=1000)
    backlog = [event(seq) for seq in range(1, 101)]
    author = backlog[0].author
    vv = {author: 100, me: 50, other: 10}
    # Nothing came by push: a peer lacking all of it gets only our own events.
    ahead = [(author, 0), (me, 20), (other, 0)]
    assert recent.wants(ahead, vv, now_ms=0) == [(me, 20)]
    recent.stored(backlog[95:], now_ms=5000)  # 96..100 came by push just now
    assert recent.wants(ahead, vv, now_ms=5500) == [(me, 20)]  # it lacks 1..95 too: it pulls
    assert recent.wants([(author, 95)], vv, now_ms=5500) == [(author, 95)]
    assert recent.wants([(author, 98)], vv, now_ms=5500) == [(author, 98)]
    assert recent.wants([(author, 95)], vv, now_ms=6500) == []  # the window has passed


def test_a_bucket_is_pulled_by_one_exchange_at_a_time():
    leases, first, second = Leases(first_ms=1000, ttl_ms=1000), object(), object()
    leases.take(first, make_mask([1, 2, 3, 9]), 1, 3, now_ms=0)
    assert leases.free(make_mask([2, 3, 4, 9]), now_ms=10) == make_mask([4, 9])
    leases.take(second, make_mask([2, 3, 4]), 0, 255, now_ms=10)  # takes 4 only
    leases.give_back(first)
    assert leases.free(make_mask([2, 4]), now_ms=20) == make_mask([2])


def test_a_lease_lapses_a_round_after_it_was_taken_unless_a_page_renews_it():
    leases, stalled, paging = Leases(first_ms=200, ttl_ms=5000), object(), object()
    leases.take(stalled, make_mask([5]), 5, 5, now_ms=0)
    leases.take(paging, make_mask([6]), 6, 6, now_ms=0)
    leases.renew(paging, now_ms=100)  # its first page came
    assert leases.free(make_mask([5, 6]), now_ms=150) == make_mask([])
    assert leases.free(make_mask([5, 6]), now_ms=300) == make_mask([5])  # the stalled lapsed
    assert leases.free(make_mask([6]), now_ms=5200) == make_mask([6])


def envelope(max_bytes: int = 4 << 20) -> Envelope:
    return Envelope(bytes(32), os.urandom(32), 60_000, max_bytes)


def test_compressed_bodies_open_to_the_same_message_and_are_smaller():
    sender, receiver = envelope(), envelope()
    page = {"t": "page", "events": [event(seq).raw for seq in range(1, 200)]}
    plain, packed = sender.seal(page), sender.seal(page, compress=True)
    assert len(packed) < len(plain)
    opened = receiver.open(packed)
    assert opened.message == page
    assert opened.compressed
    assert not receiver.open(plain).compressed  # format 1 still opens: mixed networks talk
    noise = {"t": "ack", "pad": os.urandom(64)}  # deflate would only make it larger
    assert not receiver.open(sender.seal(noise, compress=True)).compressed


def zip_bomb(inflated: int) -> bytes:
    """`inflated` bytes of zeros deflated, made a MiB at a time (never held whole)."""
    deflater, chunk = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=ZDICT_V1), bytes(1 << 20)
    return b"".join([deflater.compress(chunk) for _ in range(inflated >> 20)] + [deflater.flush()])


def test_a_members_zip_bomb_is_refused_without_inflating_past_the_cap():
    bomb = bytes((ZLIB_TAG,)) + zip_bomb(256 << 20)  # 256 MiB inflated, ~250 KB sealed
    sealed = bytes(SecretBox(bytes(32)).encrypt(bomb))  # sealed with the key: a member's
    with pytest.raises(EnvelopeError) as refused:
        envelope(1 << 20).open(sealed)
    assert refused.value.reason == "too_large_inflated"
    assert refused.value.status == 413


def test_inflate_holds_at_most_the_cap():
    with pytest.raises(EnvelopeError) as refused:
        inflate(deflate(os.urandom(10) * 100_000), 4096)
    assert refused.value.reason == "too_large_inflated"


@pytest.mark.parametrize(
    "data", [b"\xff not deflate", deflate(os.urandom(1000))[:-3], deflate(b"x") + b"tail"]
)
def test_broken_compressed_bodies_are_malformed(data):
    with pytest.raises(EnvelopeError) as refused:
        inflate(data, 1 << 20)
    assert refused.value.reason == "malformed"


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=8, unique=True))
def test_each_node_falls_to_exactly_one_of_the_relayers(relayers):
    salt = os.urandom(32)
    for _ in range(20):
        candidate = os.urandom(32)
        by_id = [r for r in relayers if my_share(r, relayers, candidate, salt)]
        by_prefix = [r for r in relayers if my_share(r, [p[:8] for p in relayers], candidate, salt)]
        assert len(by_id) == 1
        assert by_prefix == by_id


def test_recent_marks_of_many_authors_are_swept_once_old():
    """Minted authors pushed once and never asked about must not pile up in memory."""
    recent = Recent(bytes(32), window_ms=1000)
    once = [SimpleNamespace(author=i.to_bytes(32, "big"), seq=1) for i in range(1, SWEEP_AT + 1)]
    recent.stored(once, now_ms=0)  # type: ignore[arg-type]
    assert len(recent) == SWEEP_AT
    recent.stored([event(1)], now_ms=5000)  # past the window: the old marks go
    assert len(recent) == 1
