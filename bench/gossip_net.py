"""Gossip between real node processes on loopback: spread latency and catch-up speed.

    python bench/gossip_net.py [--nodes 10] [--events 200] [--backlog 100000] [--preset default]

Spread: events are handed to a random node one at a time; every node is watched with a long
poll, and an event's latency is from hand-over until the last node stored it (p50, p99).
Targets: p50 <= 50 ms, p99 <= 200 ms for 10 nodes.

Catch-up: a node joins a network whose log holds `--backlog` events; its rate until caught up is
printed beside the raw PyNaCl verify rate measured in the same run. Target: >= 0.5 x verify.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack
from nacl.bindings import crypto_sign_open
from nacl.signing import SigningKey

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import SIGNING_CONTEXT, seal
from edgebac.eventlog.store import EventLog
from tests.announce import announcement
from tests.netfix import Author, give, host_port, info, network_key, vv
from tests.procs import Nodes, wait_for


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Watcher(threading.Thread):
    """Long-polls one node's log and notes when each event id arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.arrived: dict[str, float] = {}
        self.stop = False

    def run(self) -> None:
        after = 0
        while not self.stop:
            query = f"/api/v1/events?after={after}&limit=1000&wait_ms=1000"
            with urllib.request.urlopen(self.url + query, timeout=10) as response:
                page = json.loads(response.read())
            now = time.monotonic()
            for event in page["events"]:
                self.arrived.setdefault(event["id"], now)
            after = page["next"]


def start_nodes(nodes: Nodes, tmp: Path, count: int, preset: str, key: Path) -> list:
    started = []
    for index in range(count):
        peers = ("--peers", host_port(started[0])) if started else ()
        flags = ("--network-key", str(key), "--preset", preset, *peers)
        started.append(nodes.start(tmp / f"n{index}", *flags, listen=f"127.0.0.{index + 2}:0"))
    return started


def spread(network: list, events: int) -> None:
    watchers = [Watcher(node.url) for node in network]
    for watcher in watchers:
        watcher.start()
    author, rng = Author(), random.Random(7)
    give(network[0], [author.announcement])  # an author's first event is its announcement
    sent: dict[str, float] = {}
    latencies: list[float] = []
    for _ in range(events):
        event = author.next("tick")
        sent[event.id.hex()] = time.monotonic()
        give(rng.choice(network), [event])
        event_id = event.id.hex()
        wait_for(
            lambda i=event_id: all(i in w.arrived for w in watchers), 10, "the event everywhere"
        )
        latencies.append(max(w.arrived[event_id] for w in watchers) - sent[event_id])
        time.sleep(0.01)
    for watcher in watchers:
        watcher.stop = True
    for watcher in watchers:
        watcher.join(5)
    ms = [1000 * value for value in latencies]
    print(
        f"spread to {len(network)} nodes over {events} events: p50 {percentile(ms, 0.5):.1f} ms,"
        f" p99 {percentile(ms, 0.99):.1f} ms, mean {statistics.mean(ms):.1f} ms"
        f"  (targets: p50 <= 50, p99 <= 200)"
    )


def raw_verify_rate(samples: list) -> float:
    """Signature checks alone, through the PyNaCl binding the node's verifier calls."""
    signed = []
    for event in samples:
        payload, sig = msgpack.unpackb(event.raw)
        signed.append((sig + SIGNING_CONTEXT + payload, event.author))
    started = time.perf_counter()
    for message, author in signed:
        crypto_sign_open(message, author)
    return len(signed) / (time.perf_counter() - started)


async def write_backlog(path: Path, total: int) -> list:
    """A log holding `total` events of 10 client authors, written in-process (fast)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = await EventLog.open(path, HybridClock(300_000), SigningKey.generate())
    keys = [SigningKey.generate() for _ in range(10)]
    clock = HybridClock(300_000)
    sample = []
    for key in keys:
        prev, chain = None, []
        for seq in range(1, total // len(keys) + 1):
            item = announcement() if seq == 1 else ("Note", {"text": f"backlog {seq}" * 4})
            event = seal(key, seq, prev, clock.now(), *item)
            chain.append(event.raw)
            prev = event.id
            if len(sample) < 2000:
                sample.append(event)
            if len(chain) == 1000:
                await log.ingest(chain)
                chain = []
        await log.ingest(chain)
    await log.close()
    return sample


def catch_up(nodes: Nodes, tmp: Path, key: Path, backlog: int, preset: str) -> None:
    sample = asyncio.run(write_backlog(tmp / "big" / "events.db", backlog))
    verify = raw_verify_rate(sample)
    holder = nodes.start(tmp / "big", "--network-key", str(key), "--preset", preset)
    target = vv(holder)
    started = time.monotonic()
    joiner = nodes.start(
        tmp / "joiner", "--network-key", str(key), "--preset", preset, "--peers", host_port(holder)
    )
    wait_for(lambda: all(vv(joiner).get(a) == s for a, s in target.items()), 600, "catch-up")
    elapsed = time.monotonic() - started
    rate = info(joiner)["events"] / elapsed
    print(
        f"catch-up of {backlog} events: {elapsed:.1f} s, {rate:,.0f} events/s; raw verify "
        f"{verify:,.0f}/s; ratio {rate / verify:.2f} (target >= 0.5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        key = network_key(tmp)
        nodes = Nodes()
        try:
            network = start_nodes(nodes, tmp, args.nodes, args.preset, key)
            wait_for(
                lambda: len({json.dumps(vv(n), sort_keys=True) for n in network}) == 1,
                30,
                "startup",
            )
            spread(network, args.events)
            nodes.kill_all()
            catch_up(nodes, tmp, key, args.backlog, args.preset)
        finally:
            nodes.kill_all()


if __name__ == "__main__":
    main()
