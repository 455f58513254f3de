"""Peer lists that carry only news (gossip/news.py, #17): an `hv` names what the asker holds,
the answer carries only what is newer or unnamed there, two nodes in step send each other
nothing but their own entries, and an older node (no `hv`) gets whole lists both ways."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.eventlog.clock import HybridClock
from edgebac.gossip import heartbeats
from edgebac.gossip.config import PRESETS
from edgebac.gossip.membership import Membership
from edgebac.gossip.news import (
    ITEM,
    MAX_HELD,
    PREFIX,
    WRAP,
    PeerLists,
    held_view,
    is_news,
    news_for,
    pack_held,
    parse_held,
)
from edgebac.gossip.protocol import Gossiper
from edgebac.gossip.sim import MemoryLog

ids = st.binary(min_size=32, max_size=32)
beats = st.integers(min_value=0, max_value=heartbeats.MAX_HEARTBEAT)
INTERVAL_MS = 1000.0


@given(st.dictionaries(ids, beats, max_size=MAX_HELD))
def test_an_hv_names_each_member_by_prefix_with_its_heartbeat(held):
    parsed = parse_held(pack_held(held.items()))
    assert parsed == {node_id[:PREFIX]: beat % WRAP for node_id, beat in held.items()}


@given(st.one_of(st.binary(), st.integers(), st.none(), st.text()))
def test_anything_but_a_whole_number_of_items_is_no_hv(value):
    well_formed = isinstance(value, bytes) and len(value) % ITEM == 0
    assert (parse_held(value) is None) != (well_formed and len(value) <= MAX_HELD * ITEM)


def test_an_hv_longer_than_max_held_is_refused():
    assert parse_held(bytes(ITEM * (MAX_HELD + 1))) is None


@given(ids, st.integers(min_value=0, max_value=1 << 50), st.integers(-(1 << 40), 1 << 40))
def test_news_is_a_newer_heartbeat_or_an_unnamed_member(node_id, held_beat, ahead):
    ours = held_beat + ahead
    if ours < 0:
        return
    held = parse_held(pack_held([(node_id, held_beat)]))
    assert held is not None
    assert is_news(held, node_id, ours) == (ahead > 0)
    assert is_news(held, bytes(32) if node_id != bytes(32) else b"\1" * 32, ours)


def test_a_restart_is_news_whatever_it_jumped_by():
    """A restarted node counts its heartbeat from its wall clock's ms: a jump of its past
    life's length, which a 32-bit count would wrap half the time."""
    node_id = b"\7" * 32
    held = parse_held(pack_held([(node_id, 1_764_000_000_000 + 55)]))
    assert held is not None
    for jump in (10_001, 1 << 31, (1 << 32) + 5, 3 * 86_400_000, 400 * 86_400_000):
        assert is_news(held, node_id, 1_764_000_000_055 + jump)


# ----- between memberships ----------------------------------------------------------------------


def signed_view(address: str, beat: int = 1) -> tuple[Membership, SigningKey]:
    key = SigningKey.generate()
    return Membership(bytes(key.verify_key), (address,), INTERVAL_MS, heartbeat=beat, key=key), key


def network(n: int) -> list[Membership]:
    """n views that each merged every other's own entry at time 0."""
    views = [signed_view(f"127.0.0.{i + 2}:1", 1_000 * (i + 1))[0] for i in range(n)]
    rng = random.Random(1)
    for v in views:
        for other in views:
            if other is not v:
                v.merge_rumours([other.own_entry()], 0, rng)
    return views


def exchange_news(asker: Membership, answerer: Membership, now: float, limit: int = 32) -> int:
    """The answerer's news for the asker's hv, merged; how many entries crossed."""
    held = parse_held(held_view(asker, now, limit))
    assert held is not None
    news = news_for(answerer, held, now, random.Random(2), limit)
    asker.merge_rumours(news, now, random.Random(3))
    return len(news)


def test_nodes_in_step_send_each_other_nothing():
    a, b, *_ = views = network(6)
    assert exchange_news(a, b, 10) == 0  # a holds every entry b does, as they were signed
    b.beat()
    assert exchange_news(a, b, 20) == 1  # b beat: its entry is news, and only it
    assert exchange_news(a, b, 30) == 0  # in step now
    views[4].beat()
    b.merge_rumours([views[4].own_entry()], 40, random.Random(4))
    assert exchange_news(a, b, 50) == 1  # what b heard of newer crosses...
    assert a.members[views[4].me].heartbeat == views[4].heartbeat
    assert exchange_news(a, b, 60) == 0  # ...once


def test_a_member_the_asker_does_not_name_is_news():
    """Unknown to it, or dead there: how a node is found, and a restarted one found again."""
    a, b, c = network(3)
    stranger, _ = signed_view("127.0.0.9:1", 77)
    b.merge_rumours([stranger.own_entry()], 0, random.Random(1))
    held = parse_held(held_view(a, 10, 32))
    assert held is not None
    crossed = news_for(b, held, 10, random.Random(1), 32)
    assert [entry[0] for entry in crossed] == [stranger.me]
    dead_ms = 13 * INTERVAL_MS  # c silent past dead_after (12 rounds at this size) at a...
    assert c.me not in (parse_held(held_view(a, dead_ms, 32)) or {})
    b.members[c.me].heard_ms = dead_ms  # ...but b heard c just now
    crossed = news_for(
        b, parse_held(held_view(a, dead_ms, 32)) or {}, dead_ms, random.Random(1), 32
    )
    assert c.me in [entry[0] for entry in crossed]


def test_a_view_too_large_to_name_sends_no_hv():
    views = network(6)
    assert held_view(views[0], 10, limit=2) is None  # ourselves and 5 reachable > 2 * 2
    assert held_view(views[0], 10, limit=3) is not None
    assert len(held_view(views[0], 10, limit=3) or b"") == 6 * ITEM


# ----- between gossipers ------------------------------------------------------------------------


class Wire:
    """Delivers to real gossipers by address; keeps every message and answer it carried.
    `older` addresses speak as a node before `hv`: the field is stripped both ways."""

    def __init__(self) -> None:
        self.nodes: dict[str, Gossiper] = {}
        self.older: set[str] = set()
        self.carried: list[tuple[str, dict, dict]] = []

    async def request(self, address, message):
        sender = next(a for a, g in self.nodes.items() if g is not self.nodes[address])
        if sender in self.older:
            message = {k: v for k, v in message.items() if k != "hv"}
        answer = await self.nodes[address].handle(self.nodes[sender].me, message)
        if address in self.older:
            answer = {k: v for k, v in answer.items() if k != "hv"}
        self.carried.append((address, message, answer))
        return self.nodes[address].me, answer


def ms() -> float:
    return asyncio.get_running_loop().time() * 1000


def gossipers(wire: Wire, count: int = 2) -> list[Gossiper]:
    out = []
    for i in range(count):
        address = f"127.0.0.{i + 2}:1"
        g = Gossiper(
            SigningKey.generate(),
            (address,),
            MemoryLog(None, HybridClock(60_000)),
            wire,
            PRESETS["fast"],
            clock_ms=ms,
        )
        wire.nodes[address] = g
        out.append(g)
    return out


async def settled(*nodes: Gossiper) -> None:
    """Wait (on the loop's clock) until every node's view kept its size SETTLE_ROUNDS."""
    deadline = ms() + 10_000
    while any(g.lists.named() is None for g in nodes):
        assert ms() < deadline, "views never settled"
        await asyncio.sleep(0.05)


async def test_a_growing_view_is_not_named_then_is():
    wire = Wire()
    a, b = gossipers(wire, 2)
    a.membership.merge_rumours([b.membership.own_entry()], ms(), a.rng)
    assert a.lists.named() is None  # it just grew: whole lists mix it
    await settled(a)
    assert ms() >= 4 * PRESETS["fast"].pull_interval_s * 1000 * 0.99


async def test_an_exchange_of_two_new_nodes_carries_only_their_own_entries():
    wire = Wire()
    a, b, c = gossipers(wire, 3)  # c: a third member both know of
    for g in (a, b):
        g.membership.merge_rumours([c.membership.own_entry()], ms(), g.rng)
    a.membership.merge_rumours([b.membership.own_entry()], ms(), a.rng)
    b.membership.merge_rumours([a.membership.own_entry()], ms(), b.rng)
    await settled(a, b)
    await a.exchange("127.0.0.3:1")
    _, sums, diff = wire.carried[-1]
    assert "hv" in sums
    assert "hv" in diff
    assert sums["peers"] == [a.membership.own_entry()]
    assert diff["peers"] == []  # a holds b's entry and c's as they were signed
    b.membership.beat()
    await a.exchange("127.0.0.3:1")
    _, sums, diff = wire.carried[-1]
    assert sums["peers"] == [a.membership.own_entry()]
    assert [entry[0] for entry in diff["peers"]] == [b.me]  # b beat; c is no news to a


async def test_an_older_node_gets_whole_lists_both_ways():
    wire = Wire()
    a, b, c = gossipers(wire, 3)
    wire.older.add("127.0.0.3:1")  # b
    for g in (a, b):
        g.membership.merge_rumours([c.membership.own_entry()], ms(), g.rng)
    a.membership.merge_rumours([b.membership.own_entry()], ms(), a.rng)
    b.membership.merge_rumours([a.membership.own_entry()], ms(), b.rng)
    await settled(a, b)
    await a.exchange("127.0.0.3:1")  # b's diff names nothing: it missed our list once
    assert "127.0.0.3:1" in a.lists.older
    for _ in range(2):
        await a.exchange("127.0.0.3:1")  # a asks b
        _, sums, _ = wire.carried[-1]
        assert {entry[0] for entry in sums["peers"]} == {a.me, b.me, c.me}
        await b.exchange("127.0.0.2:1")  # b asks a, naming nothing
        _, _, diff = wire.carried[-1]
        assert "hv" not in diff
        assert {entry[0] for entry in diff["peers"]} == {a.me, b.me, c.me}
    wire.older.clear()  # b upgraded
    await a.exchange("127.0.0.3:1")
    assert "127.0.0.3:1" not in a.lists.older


def test_peer_lists_answer_a_sync_without_hv_with_a_whole_list():
    membership, _ = signed_view("127.0.0.2:1")
    now = [0.0]
    lists = PeerLists(membership, lambda: now[0], random.Random(1), 8, 64)
    assert lists.answer({"t": "sync"})["peers"] == [membership.own_entry()]
    assert "hv" not in lists.answer({"t": "sums", "hv": b""})  # not settled yet
    now[0] = 4 * INTERVAL_MS
    assert "hv" in lists.answer({"t": "sums", "hv": b""})
    assert "hv" not in lists.answer({"t": "sync", "hv": b""})
