"""Thin links (#17), the pure parts: held events known from their first bytes, what a push may
carry, leases on buckets, compressed bodies inside the seal with a hard cap on inflating."""

from __future__ import annotations

import asyncio
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
from edgebac.gossip.config import PRESETS
from edgebac.gossip.envelope import ZLIB_TAG, Envelope, EnvelopeError, deflate, inflate
from edgebac.gossip.protocol import Gossiper
from edgebac.gossip.pulling import PROBE_EVENTS
from edgebac.gossip.sim import MemoryLog
from edgebac.gossip.thin import SWEEP_AT, Leases, Recent, my_share, split_held
from edgebac.gossip.vectors import ALL, make_mask
from edgebac.gossip.zdict import ZDICT_V1
from tests.announce import announcement

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


def test_a_backlog_is_paged_by_one_exchange_at_a_time():
    leases, first, second = Leases(ttl_ms=1000), object(), object()
    assert leases.claim(first, make_mask([1, 2, 3, 9]), 1, 3, now_ms=0)
    assert leases.free(make_mask([2, 3, 4, 9]), now_ms=10) == make_mask([4, 9])
    assert not leases.claim(second, make_mask([3, 4]), 0, 255, now_ms=10)  # 3 is first's
    assert leases.free(make_mask([4]), now_ms=10) == make_mask([4])  # ...and it took nothing
    assert leases.claim(first, make_mask([3, 9]), 3, 9, now_ms=10)  # its own: it may grow
    leases.give_back(first)
    assert leases.claim(second, make_mask([3, 4]), 0, 255, now_ms=20)


def test_a_lease_lapses_a_request_timeout_after_its_last_page():
    leases, stalled, paging = Leases(ttl_ms=5000), object(), object()
    leases.claim(stalled, make_mask([5]), 5, 5, now_ms=0)
    leases.claim(paging, make_mask([6]), 6, 6, now_ms=0)
    leases.renew(paging, now_ms=4000)  # a page came
    assert leases.free(make_mask([5, 6]), now_ms=4500) == make_mask([])
    assert leases.free(make_mask([5, 6]), now_ms=5000) == make_mask([5])  # the stalled lapsed
    assert leases.free(make_mask([6]), now_ms=9000) == make_mask([6])


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


# ----- leases in an exchange: only a backlog is leased --------------------------------------------


class StallingTransport:
    """`ahead:*` is a real peer holding more (by two addresses); `stalled:1` answers sums
    (every bucket differs), then never answers: its sync reply was lost."""

    def __init__(self, ahead: Gossiper) -> None:
        self.ahead = ahead
        self.syncs_to_stalled = 0

    async def request(self, address, message):
        if address == "stalled:1":
            if message["t"] == "sums":
                return b"\x0c" * 32, {"t": "diff", "mask": ALL, "peers": []}
            self.syncs_to_stalled += 1
            await asyncio.Event().wait()
        await asyncio.sleep(0.001)  # a link's delay: exchanges at once interleave
        return self.ahead.me, await self.ahead.handle(b"\x0b" * 32, message)


def chain(length: int) -> list[bytes]:
    key = SigningKey.generate()
    clock, prev, out = HybridClock(60_000), None, []
    for seq in range(1, length + 1):
        item = announcement() if seq == 1 else ("Note", {"text": f"n{seq}"})
        e = seal(key, seq, prev, clock.now(), *item)
        prev = e.id
        out.append(e.raw)
    return out


async def gossipers(events: list[bytes]) -> tuple[Gossiper, StallingTransport]:
    config = PRESETS["fast"]
    ahead_log = MemoryLog(None, HybridClock(60_000))
    assert not (await ahead_log.ingest(events)).rejections
    ahead = Gossiper(SigningKey.generate(), ("ahead:1",), ahead_log, None, config, clock_ms=ms)
    transport = StallingTransport(ahead)
    me = Gossiper(
        SigningKey.generate(),
        ("me:1",),
        MemoryLog(None, HybridClock(60_000)),
        transport,
        config,
        clock_ms=ms,
    )
    return me, transport


def ms() -> float:
    return asyncio.get_running_loop().time() * 1000


async def test_a_stalled_exchange_does_not_hold_up_pulling_what_pushes_missed():
    """The exchange with a peer whose reply was lost held every differing bucket (for a round,
    then a request timeout): another exchange with a peer that held the new events skipped
    them, and at 20% loss p99 spread doubled. A few missed events are not a backlog: no lease."""
    me, transport = await gossipers(chain(5))
    stalled = asyncio.create_task(me.exchange("stalled:1"))
    await until(lambda: transport.syncs_to_stalled == 1, "the stalled sync")
    assert await me.exchange("ahead:1")
    assert me.stats["events_new"] == 5
    stalled.cancel()
    await asyncio.gather(stalled, return_exceptions=True)


async def test_a_backlog_is_paged_from_one_peer_while_another_pages_it():
    """A backlog (a first page that comes back incomplete) is claimed: a second exchange at the
    same time keeps its probe page and leaves the rest to the first."""
    events = chain(PROBE_EVENTS * 20)
    me, _ = await gossipers(events)
    assert all(await asyncio.gather(me.exchange("ahead:1"), me.exchange("ahead:2")))
    assert me.stats["events_new"] == len(events)
    assert me.stats["backlog_left_to_another"] == 1
    assert me.stats["refused_duplicate"] <= PROBE_EVENTS


async def until(condition, what, within_s=10.0):
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)
