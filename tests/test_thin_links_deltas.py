"""Pushes as deltas against the author's previous event (gossip/deltas.py, #17): they rebuild
the very bytes, a held event is dropped before anything inflates, a missing base is a gap, a
bomb stops at the limits, and only peers that said they read deltas are sent them."""

from __future__ import annotations

import asyncio
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.eventlog.chain import Reason
from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import seal
from edgebac.gossip import deltas
from edgebac.gossip.config import PRESETS
from edgebac.gossip.envelope import deflate
from edgebac.gossip.protocol import Gossiper, ProtocolError
from edgebac.gossip.sim import MemoryLog
from edgebac.gossip.zdict import ZDICT_V1
from tests.announce import announcement

KEY = SigningKey.generate()
AUTHOR = bytes(KEY.verify_key)


def chain(bodies: list[dict], key: SigningKey = KEY) -> list[bytes]:
    clock, prev, out = HybridClock(60_000), None, []
    for seq, body in enumerate([None, *bodies], start=1):
        item = announcement() if body is None else ("Note", body)
        event = seal(key, seq, prev, clock.now(), *item)
        prev = event.id
        out.append(event.raw)
    return out


def job_like(i: int) -> dict:
    return {"text": f"job-{i:08d}", "spec": {"image": "ghcr.io/x/pipeline:1.4", "args": ["a"]}}


RAWS = chain([job_like(i) for i in range(4)])


def held(upto: int):
    async def base(author: bytes, seq: int) -> bytes | None:
        return RAWS[seq - 1] if author == AUTHOR and seq <= upto else None

    return base


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=200), min_size=2, max_size=5))
async def test_a_delta_rebuilds_the_very_event(texts):
    raws = chain([{"text": t} for t in texts])
    base = held(0)

    async def known(author: bytes, seq: int) -> bytes | None:
        return raws[seq - 1] if seq == 1 else await base(author, seq)

    items = await deltas.encode(raws[1:], known)
    rebuilt, refused = await deltas.decode(items, {AUTHOR: 1}, known, 100, 1 << 22)
    assert rebuilt == raws[1:]
    assert not refused


async def test_a_chain_from_its_first_event_is_rebuilt_from_the_push_alone():
    """An author's first push holds its announcement, whole, and the events after it, each a
    delta against the one before it in the same push: a receiver that holds none of it."""
    items = await deltas.encode(RAWS, held(0))
    assert isinstance(items[0], bytes)
    assert all(isinstance(item, list) for item in items[1:])
    rebuilt, refused = await deltas.decode(items, {}, held(0), 100, 1 << 22)
    assert rebuilt == RAWS
    assert not refused


async def test_a_job_like_event_as_a_delta_is_far_smaller_than_deflated_alone():
    items = await deltas.encode([RAWS[3]], held(3))
    assert isinstance(items[0], list)
    assert items[0][:2] == [AUTHOR, 4]
    assert len(items[0][2]) < 0.7 * len(deflate(RAWS[3]))  # its seq, time, prev, sig and id


async def test_held_deltas_are_dropped_before_inflating_and_a_missing_base_is_a_gap():
    garbage = [AUTHOR, 3, b"not deflate at all"]  # would be malformed, if it were inflated
    items = [garbage, [AUTHOR, 5, b"x"]]
    rebuilt, refused = await deltas.decode(items, {AUTHOR: 3}, held(3), 100, 1 << 22)
    assert rebuilt == []
    assert [r.reason for r in refused] == [Reason.DUPLICATE, Reason.GAP]


async def test_a_delta_bomb_stops_at_the_event_limit_and_the_message_limit():
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=(ZDICT_V1 + RAWS[2])[-(1 << 15) :])
    bomb = deflater.compress(bytes(8 << 20)) + deflater.flush()
    rebuilt, refused = await deltas.decode([[AUTHOR, 4, bomb]], {AUTHOR: 3}, held(3), 10, 1 << 22)
    assert rebuilt == []
    assert [r.reason for r in refused] == [Reason.MALFORMED]
    small = (await deltas.encode([RAWS[3]], held(3)))[0]
    rebuilt, refused = await deltas.decode([small], {AUTHOR: 3}, held(3), 10, 100)
    assert rebuilt == []
    assert [r.reason for r in refused] == [Reason.MALFORMED]
    with pytest.raises(ProtocolError):
        await deltas.decode([small] * 11, {AUTHOR: 3}, held(3), 10, 1 << 22)
    with pytest.raises(ProtocolError):
        await deltas.decode([[AUTHOR, "4", b""]], {AUTHOR: 3}, held(3), 10, 1 << 22)


# ----- between gossipers --------------------------------------------------------------------------


class Wire:
    """Delivers to real gossipers by address; keeps every push it carried."""

    def __init__(self) -> None:
        self.nodes: dict[str, Gossiper] = {}
        self.pushes: list[tuple[str, dict]] = []

    async def request(self, address, message):
        if message["t"] == "push":
            self.pushes.append((address, message))
        sender = next(a for a, g in self.nodes.items() if g is not self.nodes[address])
        return self.nodes[address].me, await self.nodes[address].handle(
            self.nodes[sender].me, message
        )


async def until(condition, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


def ms() -> float:
    return asyncio.get_running_loop().time() * 1000


async def test_a_peer_that_reads_deltas_gets_them_and_stores_the_event_an_older_one_whole():
    wire, config = Wire(), PRESETS["fast"]
    logs = {a: MemoryLog(None, HybridClock(60_000)) for a in ("a:1", "b:1")}
    for address, log in logs.items():
        wire.nodes[address] = Gossiper(
            SigningKey.generate(), (address,), log, wire, config, clock_ms=ms
        )
        assert not (await log.ingest(RAWS[:3])).rejections
        log.add_listener(wire.nodes[address].on_local)
    a, b = wire.nodes["a:1"], wire.nodes["b:1"]
    a.membership.learn(b.me, ["b:1"], 1, ms(), a.rng)
    await a.exchange("b:1")  # b's diff says it reads deltas
    assert b.me in a.delta_peers
    await a.ingest_from(None, [RAWS[3]])
    await until(lambda: logs["b:1"].version_vector()[AUTHOR] == 4)
    ((_, push),) = wire.pushes
    assert push["events"] == []
    assert isinstance(push["deltas"][0], list)
    assert logs["b:1"].version_vector()[AUTHOR] == 4
    a.reads_deltas(b.me, {"t": "diff"})  # an older node: no `d`
    more = chain([job_like(i) for i in range(5)], SigningKey.generate())
    for log in logs.values():
        assert not (await log.ingest(more[:4])).rejections
    await a.ingest_from(None, [more[4]])
    await until(lambda: len(wire.pushes) == 2)
    await a.stop()
    assert wire.pushes[-1][1]["events"] == [more[4]]
    assert "deltas" not in wire.pushes[-1][1]
