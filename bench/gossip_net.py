"""Gossip between real node processes on loopback: spread latency, catch-up speed, link cost.

    python bench/gossip_net.py [--quick] [--nodes 10] [--events 200] [--backlog 100000]
                               [--preset default]

`--backlog 0` skips the catch-up.

Spread (steady state): events are handed to a random node one at a time; every node is watched
with a long poll, and an event's latency is from hand-over until the last node stored it (p50,
p99). Targets: p50 <= 50 ms, p99 <= 200 ms for 10 nodes. From the nodes' gossip stats over the
same time: deliveries per new event per node (copies received, new or duplicate, / events /
nodes; target <= 1.3) and bytes on the wire per event per node relative to the event's raw size
(the pushes that carry the events and their acks / events / nodes / mean raw size; target <=
1.0), then the same for every gossip byte sent, idle pulls included (at the bench's event rate),
and where those bytes went by message type and part (events, peer lists, framing, seal, what
zlib took off). Idle: what a node sends a second when nothing is written (anti-entropy and
membership: a cost per second, not per event), right after start and once views have settled
(every node's sums carried its own peer entry alone for three 2 s windows in a row: it names
its view, gossip/news.py); the spread is measured after that, in the settled state.

Catch-up: a node joins a network of three nodes whose logs hold `--backlog` events; its rate
until caught up is printed beside the raw PyNaCl verify rate measured just before and after it
(their mean; both are printed, as the speed of a shared machine drifts; target >= 0.5 x
verify), with its deliveries per new event (target <= 1.3) and the bytes it received relative
to the backlog's raw size. `--quick`: 5 nodes, 50 events, a backlog of 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
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


def gossip_stats(network: list) -> list[dict[str, int]]:
    return [info(node)["gossip"] for node in network]


def deliveries(stats: dict[str, int]) -> int:
    """Event copies a node received: new ones, and those refused (duplicates above all)."""
    refused = sum(v for k, v in stats.items() if k.startswith("refused_") and "body" not in k)
    return stats.get("events_new", 0) + refused - stats.get("refused_unknown_type", 0)


def job_like(i: int) -> dict:
    """A body shaped like a job's events (a spec with image, command, inputs, labels): what
    an edge network carries, and what compression is for."""
    return {
        "job_id": f"job-{i:08d}",
        "spec": {
            "engine": "docker",
            "image": "ghcr.io/example/sensor-pipeline:1.4.2",
            "entrypoint": ["python", "-m", "pipeline", "--window", "60s", "--format", "parquet"],
            "env": {"REGION": "north-sea", "SHIP": "MV Aurora", "LOG_LEVEL": "info"},
            "inputs": [{"source": f"file:///data/sensors/2026-12-01/{i}/", "target": "/inputs"}],
            "outputs": [{"name": "results", "path": "/outputs"}],
            "resources": {"cpu": "500m", "memory": "256Mi", "disk": "1Gi"},
            "constraints": [{"key": "site", "op": "in", "values": ["ship-7", "ship-9"]}],
            "publisher": {"type": "local"},
            "timeout_s": 600,
            "count": 1,
        },
    }


def link_cost(
    before: list, after: list, events: int, raw_size: float
) -> tuple[float, float, float]:
    """(deliveries per event per node, wire bytes sent per event per node / raw size, the same
    for the pushes that carried the events alone)."""
    nodes = len(before)

    def total(key: str) -> int:
        return sum(a.get(key, 0) - b.get(key, 0) for a, b in zip(after, before, strict=True))

    got = sum(deliveries(a) - deliveries(b) for a, b in zip(after, before, strict=True))
    per = events * nodes * raw_size
    return got / events / nodes, total("wire_bytes_sent") / per, total("wire_bytes_push") / per


PARTS = ("events", "rumours", "seal", "zlib")


def breakdown(before: list, after: list, events: int, raw_size: float) -> list[str]:
    """Lines of where the bytes went, by message type and part, per event per node, as a share
    of the event's raw size (from the nodes' `sent_<t>_*` stats, gossip/http.tally)."""
    per = events * len(before) * raw_size
    totals: dict[str, int] = {}
    for a, b in zip(after, before, strict=True):
        for key, value in a.items():
            if key.startswith("sent_") and key.count("_") >= 2:
                totals[key] = totals.get(key, 0) + value - b.get(key, 0)
    kinds = sorted(k[5:-6] for k in totals if k.endswith("_bytes") and totals[k])
    lines = [
        f"  {'message':>6} {'bodies/ev':>9} {'x raw':>6} = {'events':>6} {'rumours':>7}"
        f" {'framing':>7} {'seal':>6} {'zlib':>6}"
    ]
    for kind in sorted(kinds, key=lambda k: -totals[f"sent_{k}_bytes"]):
        part = {p: totals.get(f"sent_{kind}_{p}", 0) / per for p in PARTS}
        whole = totals[f"sent_{kind}_bytes"] / per
        framing = whole - sum(part.values())
        lines.append(
            f"  {kind:>6} {totals.get(f'sent_{kind}_bodies', 0) / events / len(before):>9.2f}"
            f" {whole:>6.3f} = {part['events']:>6.3f} {part['rumours']:>7.3f} {framing:>7.3f}"
            f" {part['seal']:>6.3f} {part['zlib']:>6.3f}"
        )
    return lines


def idle(network: list, when: str, seconds: float = 10.0) -> None:
    """Bytes every node sends a second when nothing is written: anti-entropy and membership."""
    before = gossip_stats(network)
    started = time.monotonic()
    time.sleep(seconds)
    after = gossip_stats(network)
    elapsed = time.monotonic() - started
    sent = sum(
        a.get("wire_bytes_sent", 0) - b.get("wire_bytes_sent", 0)
        for a, b in zip(after, before, strict=True)
    )
    kinds = ("sums", "diff", "sync", "page")
    rumours = sum(
        a.get(f"sent_{k}_rumours", 0) - b.get(f"sent_{k}_rumours", 0)
        for a, b in zip(after, before, strict=True)
        for k in kinds
    )
    per = len(network) * elapsed
    print(
        f"idle on {len(network)} nodes, {when}: {sent / per:,.0f} B sent per node per second"
        f" ({rumours / per:,.0f} B of it peer lists), one exchange a round"
    )


# A signed peer-list entry is 127 bytes, 128 in a msgpack list: sums that carry at most this
# much of peer list a body carry the sender's own entry alone (gossip/news.py), which a node
# sends once its view has kept its size SETTLE_ROUNDS and it names it (`hv`).
OWN_ENTRY_ONLY = 160


def settle(
    network: list, window: float = 2.0, windows: int = 3, limit: float = 180.0
) -> float | None:
    """Wait until views have settled: in `windows` windows in a row, every node's sums carried
    its own peer entry alone (it names its view, so answers carry news only); seconds waited,
    None if that did not happen within `limit` (views too large to name: news.held_view).

    Right after start, views are still growing and each node sends whole peer lists (news.py
    waits SETTLE_ROUNDS of a steady view first), so an idle figure taken then is not the
    steady state's: on 10 nodes the first 10 s sent ~2.4 KB/s a node, the settled ~1.1 KB/s.
    """
    started, quiet = time.monotonic(), 0
    before = gossip_stats(network)
    while quiet < windows:
        if time.monotonic() - started > limit:
            return None
        time.sleep(window)
        after = gossip_stats(network)
        per_body = [
            (a.get("sent_sums_rumours", 0) - b.get("sent_sums_rumours", 0))
            / max(1, a.get("sent_sums_bodies", 0) - b.get("sent_sums_bodies", 0))
            for a, b in zip(after, before, strict=True)
        ]
        quiet = quiet + 1 if max(per_body) <= OWN_ENTRY_ONLY else 0
        before = after
    return time.monotonic() - started


def spread(network: list, events: int) -> None:
    watchers = [Watcher(node.url) for node in network]
    for watcher in watchers:
        watcher.start()
    author, rng = Author(), random.Random(7)
    give(network[0], [author.announcement])  # an author's first event is its announcement
    wait_for(lambda: len({json.dumps(vv(n), sort_keys=True) for n in network}) == 1, 30, "it")
    before, sizes = gossip_stats(network), []
    sent: dict[str, float] = {}
    latencies: list[float] = []
    for _ in range(events):
        event = author.next("tick", **job_like(len(sizes)))
        sizes.append(len(event.raw))
        sent[event.id.hex()] = time.monotonic()
        give(rng.choice(network), [event])
        event_id = event.id.hex()
        wait_for(
            lambda i=event_id: all(i in w.arrived for w in watchers), 10, "the event everywhere"
        )
        latencies.append(max(w.arrived[event_id] for w in watchers) - sent[event_id])
        time.sleep(0.01)
    after = gossip_stats(network)
    per_node, wire, push = link_cost(before, after, events, statistics.mean(sizes))
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
    print(
        f"steady state on {len(network)} nodes: {per_node:.2f} deliveries per new event per node"
        f" (target <= 1.3); on the wire per node {push:.2f} x the event's raw size"
        f" ({statistics.mean(sizes):.0f} B) in the pushes that carry it (target <= 1.0),"
        f" {wire:.2f} x with idle anti-entropy (pulls, membership) at this event rate"
    )
    print("where the bytes sent went, per event per node, x the event's raw size:")
    print("\n".join(breakdown(before, after, events, statistics.mean(sizes))))


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


async def write_backlog(path: Path, total: int) -> tuple[list, int]:
    """A log holding `total` events of 10 client authors, written in-process (fast); (a sample
    of them, the raw bytes of all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = await EventLog.open(path, HybridClock(300_000), SigningKey.generate())
    keys = [SigningKey.generate() for _ in range(10)]
    clock = HybridClock(300_000)
    sample, raw_bytes = [], 0
    for key in keys:
        prev, chain = None, []
        for seq in range(1, total // len(keys) + 1):
            item = announcement() if seq == 1 else ("Note", {"text": f"backlog {seq}" * 4})
            event = seal(key, seq, prev, clock.now(), *item)
            chain.append(event.raw)
            raw_bytes += len(event.raw)
            prev = event.id
            if len(sample) < 2000:
                sample.append(event)
            if len(chain) == 1000:
                await log.ingest(chain)
                chain = []
        await log.ingest(chain)
    await log.close()
    return sample, raw_bytes


def catch_up(nodes: Nodes, tmp: Path, key: Path, backlog: int, preset: str) -> None:
    sample, raw_bytes = asyncio.run(write_backlog(tmp / "big0" / "events.db", backlog))
    verify = raw_verify_rate(sample)
    for copy in (1, 2):  # three holders: a joiner meets several peers, as it does in a network
        (tmp / f"big{copy}").mkdir()
        shutil.copy(tmp / "big0" / "events.db", tmp / f"big{copy}" / "events.db")
    flags = ("--network-key", str(key), "--preset", preset)
    holders = [nodes.start(tmp / "big0", *flags)]
    for copy in (1, 2):
        holders.append(nodes.start(tmp / f"big{copy}", *flags, "--peers", host_port(holders[0])))
    wait_for(lambda: all(vv(h) == vv(holders[0]) for h in holders), 60, "holders")
    target = vv(holders[0])
    peers = ",".join(host_port(h) for h in holders)
    joiner = nodes.start(tmp / "joiner", *flags, "--peers", peers)
    started = time.monotonic()  # from when it listens: its start-up is not catching up
    wait_for(lambda: all(vv(joiner).get(a) == s for a, s in target.items()), 900, "catch-up")
    elapsed = time.monotonic() - started
    after = raw_verify_rate(sample)  # again: a shared machine's speed drifts within minutes
    stats = info(joiner)["gossip"]
    new = stats.get("events_new", 0)
    rate = new / elapsed
    before, verify = verify, (verify + after) / 2
    print(
        f"catch-up of {backlog} events from 3 peers: {elapsed:.1f} s, {rate:,.0f} events/s; raw "
        f"verify {verify:,.0f}/s (mean of {before:,.0f} before and {after:,.0f} after); ratio"
        f" {rate / verify:.2f} (target >= 0.5); "
        f"{deliveries(stats) / max(new, 1):.2f} deliveries per new event (target <= 1.3); "
        f"received {stats.get('wire_bytes_received', 0) / raw_bytes:.2f} x the backlog's raw size"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--quick", action="store_true", help="5 nodes, 50 events, 10,000 backlog")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.events, args.backlog = 5, 50, 10_000
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
            idle(network, "right after start")
            waited = settle(network)
            print(
                "views not settled within 180 s (whole peer lists still sent)"
                if waited is None
                else f"views settled {waited:.0f} s later (every sums carried its own entry alone)"
            )
            idle(network, "settled")
            spread(network, args.events)
            nodes.kill_all()
            if args.backlog:  # --backlog 0: the steady state alone
                catch_up(nodes, tmp, key, args.backlog, args.preset)
        finally:
            nodes.kill_all()


if __name__ == "__main__":
    main()
