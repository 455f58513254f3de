"""The gossip layer's pure parts: the sealed envelope and membership arithmetic."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebac.errors import ConfigError
from edgebac.gossip.envelope import (
    OPEN_NETWORK_KEY,
    Envelope,
    EnvelopeError,
    read_network_key,
    write_network_key,
)
from edgebac.gossip.membership import (
    Liveness,
    Membership,
    dead_after_ms,
    suspect_after_ms,
)

KEY = bytes(range(32))
ME = b"\x01" * 32


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def envelope(clock: Clock, key: bytes = KEY, sender: bytes = ME) -> Envelope:
    return Envelope(key, sender, max_age_ms=60_000, max_bytes=1 << 16, clock_ms=clock)


def test_seal_then_open_gives_sender_time_and_message():
    clock = Clock()
    body = envelope(clock).seal({"t": "sync", "vv": {b"a" * 32: 3}})
    opened = envelope(clock, sender=b"\x02" * 32).open(body)
    assert opened.sender == ME
    assert opened.sent_ms == clock.now
    assert opened.message == {"t": "sync", "vv": {b"a" * 32: 3}}


@pytest.mark.parametrize(
    ("age_ms", "reason"), [(60_001, "replay"), (-30_001, "clock_skew"), (59_000, None)]
)
def test_bodies_outside_the_time_window_are_refused(age_ms, reason):
    sender_clock, receiver_clock = Clock(1_000_000 - age_ms), Clock(1_000_000)
    body = envelope(sender_clock).seal("hi")
    if reason is None:
        assert envelope(receiver_clock).open(body).message == "hi"
    else:
        with pytest.raises(EnvelopeError) as refused:
            envelope(receiver_clock).open(body)
        assert refused.value.reason == reason


def test_each_body_opens_once():
    clock = Clock()
    receiver = envelope(clock)
    body = envelope(clock).seal("once")
    receiver.open(body)
    with pytest.raises(EnvelopeError, match="already received"):
        receiver.open(body)
    clock.now += 120_000  # long after: now too old rather than remembered
    with pytest.raises(EnvelopeError) as stale:
        receiver.open(body)
    assert stale.value.reason == "replay"


def test_another_key_cannot_open_or_forge():
    clock = Clock()
    body = envelope(clock).seal("secret")
    with pytest.raises(EnvelopeError) as refused:
        envelope(clock, key=OPEN_NETWORK_KEY).open(body)
    assert (refused.value.reason, refused.value.status) == ("not_sealed", 403)


@given(st.binary(max_size=200), st.integers(0, 199))
def test_any_flipped_byte_or_garbage_is_refused(garbage, position):
    clock = Clock()
    receiver = envelope(clock)
    with pytest.raises(EnvelopeError):
        receiver.open(garbage)
    body = bytearray(envelope(clock).seal({"t": "push", "events": [b"x" * 50]}))
    body[position % len(body)] ^= 0x40
    with pytest.raises(EnvelopeError):
        receiver.open(bytes(body))


def test_too_large_is_413():
    with pytest.raises(EnvelopeError) as refused:
        envelope(Clock()).open(b"x" * ((1 << 16) + 1))
    assert refused.value.status == 413


def test_network_key_file_round_trip_and_refusals(tmp_path):
    path = tmp_path / "net.key"
    write_network_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(read_network_key(path)) == 32
    with pytest.raises(ConfigError, match="already exists"):
        write_network_key(path)
    (tmp_path / "hex.key").write_text(KEY.hex() + "\n")
    assert read_network_key(tmp_path / "hex.key") == KEY
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(ConfigError, match="is not a network key"):
        read_network_key(tmp_path / "bad.key")


# ----- membership ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "suspect", "dead"),
    [(1, 4000, 12000), (10, 4000, 12000), (100, 8000, 24000), (10_000, 16000, 48000)],
)
def test_timeouts_grow_with_log_of_network_size(n, suspect, dead):
    assert suspect_after_ms(n, 1000, 4.0) == pytest.approx(suspect)
    assert dead_after_ms(n, 1000, 4.0, 3.0) == pytest.approx(dead)


def member_ids(count: int) -> list[bytes]:
    return [bytes([i + 2]) * 32 for i in range(count)]


def membership(now: float = 0.0) -> Membership:
    view = Membership(ME, ("127.0.0.2:1",), interval_ms=1000)
    rng = random.Random(1)
    for index, node_id in enumerate(member_ids(3)):
        view.learn(node_id, [f"127.0.0.{index + 3}:1"], heartbeat=10, now_ms=now, rng=rng)
    return view


def test_liveness_follows_heartbeats_and_failures():
    view = membership()
    a, b, c = (view.members[i] for i in member_ids(3))
    assert view.liveness(a, 3_000) is Liveness.ALIVE
    assert view.liveness(a, 4_001) is Liveness.SUSPECT
    assert view.liveness(a, 12_001) is Liveness.DEAD
    # A newer heartbeat heard through anyone revives it; an older one does not.
    view.learn(a.node_id, list(a.addresses), 11, 12_001, random.Random())
    view.learn(b.node_id, list(b.addresses), 9, 12_001, random.Random())
    assert view.liveness(a, 12_002) is Liveness.ALIVE
    assert view.liveness(b, 12_002) is Liveness.DEAD
    # A failed direct exchange makes a member suspect at once; a success clears it.
    view.failed(None, c.addresses[0], 100)
    assert view.liveness(c, 101) is Liveness.SUSPECT
    view.contacted(c.node_id, None, 102)
    assert view.liveness(c, 103) is Liveness.ALIVE


def test_pull_targets_prefer_live_members_but_probe_the_dead():
    view = membership()
    view.add_seeds(["127.0.0.99:1"])
    rng = random.Random(3)
    live_only = {view.pull_target(1_000, rng, dead_probe_chance=0.0) for _ in range(200)}
    assert live_only == {"127.0.0.3:1", "127.0.0.4:1", "127.0.0.5:1"}
    # Once everyone is dead, only long shots remain: the unanswered seed and the dead.
    dead_targets = {view.pull_target(60_000, rng, dead_probe_chance=0.0) for _ in range(200)}
    assert dead_targets == {"127.0.0.3:1", "127.0.0.4:1", "127.0.0.5:1", "127.0.0.99:1"}


def test_push_targets_are_distinct_live_and_never_the_sender():
    view = membership()
    rng = random.Random(5)
    sender = member_ids(3)[0]
    for _ in range(50):
        targets = view.push_targets(1_000, rng, fanout=2, exclude=sender)
        assert len(targets) == len(set(targets)) == 2
        assert "127.0.0.3:1" not in targets


def test_rumours_carry_ourselves_first_and_merge_skips_garbage():
    view = membership()
    view.beat()
    rumours = view.rumours(1_000, random.Random(1), limit=2)
    assert rumours[0] == [ME, ["127.0.0.2:1"], 1]
    assert len(rumours) == 2
    other = Membership(b"\x09" * 32, ("127.0.0.9:1",), interval_ms=1000)
    junk = [["short", ["x"], 1], [b"\x07" * 32, "not a list", 1], [b"\x07" * 32, ["a"], "1"], 5]
    other.merge_rumours([*rumours, *junk], 1_000, random.Random(1))
    other.merge_rumours("not even a list", 1_000, random.Random(1))
    assert set(other.members) == {ME, rumours[1][0]}


def test_bounded_view_evicts_instead_of_growing():
    view = Membership(ME, ("127.0.0.2:1",), interval_ms=1000, view_limit=8)
    rng = random.Random(2)
    for index, node_id in enumerate(member_ids(40)):
        view.learn(node_id, [f"h{index}:1"], 1, float(index), rng)
    assert len(view.members) == 8
