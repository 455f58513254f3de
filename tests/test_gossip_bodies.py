"""Bodies of megabytes travel whole, and a page can always carry the largest legal event.

Real aiohttp servers on 127.0.0.1 (port 0) and a real event log; no node process. The
process-level proof is tests/test_catchup_net.py.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.errors import ConfigError
from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import MAX_EVENT_BYTES, Event, decode
from edgebac.eventlog.store import EventLog
from edgebac.gossip.bodies import BodyTooLarge, batches, read_body
from edgebac.gossip.config import PRESETS, GossipConfig, largest_page_body
from edgebac.gossip.envelope import OPEN_NETWORK_KEY, Envelope
from edgebac.gossip.http import PATH, HttpTransport, add_gossip_routes
from edgebac.gossip.protocol import Gossiper, TransportError
from edgebac.gossip.vectors import whole_range
from tests.netfix import Author
from tests.test_content_net import serving as serving_url

FAST = PRESETS["fast"]


def wall_ms() -> float:
    return time.time_ns() / 1e6


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """A real loopback server for `app`; yields HOST:PORT, as gossip dials peers."""
    async with serving_url(app) as url:
        yield url.removeprefix("http://")


def note_of(author: Author, size: int) -> Event:
    """`author`'s next event of `size` bytes, exactly from 64 KiB up (past it a string's header
    no longer grows, so the size is linear in the text's length)."""
    probe = len(author.next("x" * 70_000).raw)
    author.events.pop()
    event = author.next("x" * max(0, 70_000 + size - probe))
    assert len(event.raw) == size or size < 70_000
    return event


def streaming_app(size: int) -> web.Application:
    """Answers with `size` bytes in 64 KiB writes, chunked: no length said up front."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, size, 1 << 16):
            await response.write(b"z" * min(1 << 16, size - start))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def test_read_body_reads_to_the_end_and_refuses_past_the_limit():
    size = 3 << 20
    async with serving(streaming_app(size)) as address, aiohttp.ClientSession() as session:
        async with session.get(f"http://{address}/") as response:
            assert await read_body(response.content, size) == b"z" * size
        async with session.get(f"http://{address}/") as response:
            with pytest.raises(BodyTooLarge, match=str(size - 1)):
                await read_body(response.content, size - 1)


@contextlib.asynccontextmanager
async def gossip_peer(tmp_path: Path, raws: list[bytes]) -> AsyncIterator[tuple[str, Gossiper]]:
    """A gossip route on a real log holding `raws`: (its address, its gossiper)."""
    log = await EventLog.open(tmp_path / "peer.db", HybridClock(60_000), SigningKey.generate())
    report = await log.ingest(raws)
    assert len(report.accepted) == len(raws), report.rejections
    key = SigningKey.generate()
    envelope = Envelope(OPEN_NETWORK_KEY, bytes(key.verify_key), 30_000, FAST.max_body_bytes)
    gossiper = Gossiper(key, (), log, transport=None, config=FAST, clock_ms=wall_ms)  # type: ignore[arg-type]
    app = web.Application()
    add_gossip_routes(app, gossiper, envelope)
    try:
        async with serving(app) as address:
            yield address, gossiper
    finally:
        await gossiper.stop()
        await log.close()


def transport() -> HttpTransport:
    me = bytes(SigningKey.generate().verify_key)
    envelope = Envelope(OPEN_NETWORK_KEY, me, 30_000, FAST.max_body_bytes)
    return HttpTransport(envelope, 30.0, FAST.max_body_bytes)


async def test_a_page_and_a_push_of_megabytes_open_on_the_other_side(tmp_path):
    """The bodies a catch-up moves: a reply page with the largest event, a push of 3 MiB."""
    held, pushed = Author(), Author()
    largest = note_of(held, MAX_EVENT_BYTES)
    client = transport()
    raws = [held.announcement.raw, largest.raw]
    async with gossip_peer(tmp_path, raws) as (address, gossiper):
        try:
            _, page = await client.request(address, whole_range({held.id: 1}))
            assert page["events"] == [largest.raw]
            events = [pushed.announcement.raw] + [note_of(pushed, 1 << 20).raw for _ in range(3)]
            _, ack = await client.request(address, {"t": "push", "events": events, "peers": []})
        finally:
            await client.close()
    assert ack == {"t": "ack", "new": 4, "refused": 0}
    assert not any(name.startswith("refused_body") for name in gossiper.stats)


async def test_a_body_past_the_limit_is_refused_with_413_even_without_a_length(tmp_path):
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(FAST.max_body_bytes // (1 << 16) + 1):
            yield b"\0" * (1 << 16)

    async with gossip_peer(tmp_path, []) as (address, gossiper):
        url = f"http://{address}{PATH}"
        async with aiohttp.ClientSession() as session, session.post(url, data=chunks()) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "too_large"
        assert gossiper.stats["refused_body_too_large"] == 1


async def test_a_reply_past_the_limit_is_a_transport_error():
    client = transport()
    async with serving(streaming_app(FAST.max_body_bytes + 1)) as address:
        try:
            with pytest.raises(TransportError, match="larger than"):
                await client.request(address, whole_range())
        finally:
            await client.close()


# ----- pages and the body limit ---------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        *PRESETS.values(),
        FAST.with_(max_page_bytes=64 << 10),  # pages far smaller than the largest event
        FAST.with_(max_page_events=1),
    ],
)
async def test_every_page_carries_one_event_at_least_the_largest_too(tmp_path, config):
    """Pages of a log of small events around the largest legal one, served as a peer sees
    them: never empty, each body within the limit, everything delivered in order."""
    author = Author()
    sizes = [300, 200 << 10, MAX_EVENT_BYTES, 100, MAX_EVENT_BYTES - 1, 700 << 10, 50]
    raws = [author.announcement.raw] + [note_of(author, size).raw for size in sizes]
    async with gossip_peer(tmp_path, raws) as (_, gossiper):
        gossiper.config = config
        me = bytes(SigningKey.generate().verify_key)
        envelope = Envelope(OPEN_NETWORK_KEY, me, 30_000, config.max_body_bytes)
        got: list[bytes] = []
        vv: dict[bytes, int] = {}
        for _ in range(len(raws) + 1):
            page = await gossiper.handle(me, whole_range(vv))
            missing = [raw for raw in page["events"] if decode(raw).author == author.id]
            assert page["events"], "an empty page while events are missing"
            body = envelope.seal(page)
            assert len(body) <= largest_page_body(config) <= config.max_body_bytes
            assert envelope.open(body).message["events"] == page["events"]
            got.extend(missing)
            for raw in page["events"]:
                event = decode(raw)
                vv[event.author] = event.seq
            if page["complete"]:
                break
    assert got == raws


def test_presets_carry_a_page_and_a_body_too_small_for_one_is_refused():
    for config in PRESETS.values():
        assert largest_page_body(config) <= config.max_body_bytes
        assert largest_page_body(config) > MAX_EVENT_BYTES
    with pytest.raises(ConfigError, match="max_body_bytes"):
        FAST.with_(max_body_bytes=MAX_EVENT_BYTES)
    with pytest.raises(ConfigError, match="max_page_events"):
        FAST.with_(max_page_events=0)
    assert isinstance(FAST.with_(max_page_bytes=1), GossipConfig)


@given(
    sizes=st.lists(st.integers(1, 3000), max_size=60),
    max_events=st.integers(1, 10),
    max_bytes=st.integers(1, 5000),
)
def test_batches_keep_order_and_bounds_and_carry_any_event(sizes, max_events, max_bytes):
    raws = [bytes([i % 256]) * size for i, size in enumerate(sizes)]
    cut = batches(raws, max_events, max_bytes)
    assert [raw for batch in cut for raw in batch] == raws
    for batch in cut:
        assert 1 <= len(batch) <= max_events
        assert sum(map(len, batch)) <= max_bytes or len(batch) == 1
    for first, second in itertools.pairwise(cut):  # no batch closed while the next would fit
        full = len(first) == max_events or sum(map(len, first)) + len(second[0]) > max_bytes
        assert full
