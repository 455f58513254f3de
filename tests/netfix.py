"""Helpers for tests of real node networks: client-signed events, partitions, raw gossip.

Every address here is a loopback address (127.0.0.x); partitions are iptables rules between
such addresses, and they are always removed, even when the test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import Event, seal
from edgebac.gossip.envelope import Envelope
from tests.announce import ANNOUNCEMENT
from tests.procs import NodeProcess, Nodes, run_edgebac, wait_for


class Author:
    """A member that signs its own chain: its announcement, then `Note` events (test traffic
    any node relays). An author's first event must be its announcement, so `events[0]` (seq 1)
    is `announcement`, sealed here; give it with (or before) the first notes, e.g.
    `give(node, [author.announcement, author.next()])`."""

    def __init__(self, **announced: Any) -> None:
        self.key = SigningKey.generate()
        self.clock = HybridClock(60_000)
        self.announcement = seal(
            self.key, 1, None, self.clock.now(), "NodeAnnounced", ANNOUNCEMENT | announced
        )
        self.events: list[Event] = [self.announcement]

    @property
    def id(self) -> bytes:
        return bytes(self.key.verify_key)

    def next(self, text: str = "note", **extra: Any) -> Event:
        prev = self.events[-1] if self.events else None
        event = seal(
            self.key,
            len(self.events) + 1,
            prev.id if prev else None,
            self.clock.now(),
            "Note",
            {"text": text, **extra},
        )
        self.events.append(event)
        return event


def new_author_events(text: str = "note") -> list[Event]:
    """A new author's announcement and one note: a whole chain any node takes from a member."""
    author = Author()
    return [author.announcement, author.next(text)]


def post_json(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def give(node: NodeProcess, events: Iterable[Event]) -> dict[str, Any]:
    status, body = post_json(node.url + "/api/v1/events", {"events": [e.raw.hex() for e in events]})
    assert status == 200, body
    return body


def info(node: NodeProcess) -> dict[str, Any]:
    status, body = node.get_json("/api/v1/node")
    assert status == 200, body
    return body


def event_ids(node: NodeProcess) -> set[str]:
    ids: set[str] = set()
    after = 0
    while True:
        _, page = node.get_json(f"/api/v1/events?after={after}&limit=1000")
        ids.update(event["id"] for event in page["events"])
        if not page["more"]:
            return ids
        after = page["next"]


def vv(node: NodeProcess) -> dict[str, int]:
    return info(node)["version_vector"]


def converged(nodes: list[NodeProcess], expect: dict[str, int] | None = None) -> bool:
    vectors = [vv(node) for node in nodes]
    if any(vector != vectors[0] for vector in vectors):
        return False
    return expect is None or all(vectors[0].get(a) == seq for a, seq in expect.items())


def wait_converged(
    nodes: list[NodeProcess], expect: dict[str, int] | None = None, timeout: float = 20.0
) -> None:
    wait_for(lambda: converged(nodes, expect), timeout, "version vectors to agree")
    contents = [event_ids(node) for node in nodes]
    assert all(ids == contents[0] for ids in contents), "same vectors but different events"


def host_port(node: NodeProcess) -> str:
    return node.url.removeprefix("http://")


def start_network(
    nodes: Nodes, tmp_path: Path, count: int, *extra: str, first_host: int = 2
) -> list[NodeProcess]:
    """`count` nodes on 127.0.0.<first_host>..., each seeded with the first."""
    started: list[NodeProcess] = []
    for index in range(count):
        peers = ("--peers", host_port(started[0])) if started else ()
        host = f"127.0.0.{first_host + index}"
        started.append(nodes.start(tmp_path / f"node{index}", *peers, *extra, listen=f"{host}:0"))
    return started


@contextlib.contextmanager
def private_network(tmp_path: Path, count: int, *extra: str) -> Iterator[list[NodeProcess]]:
    """`count` nodes of one private network (a key of their own), converged on each other's
    announcements; every one killed on the way out (for module-scoped fixtures)."""
    nodes = Nodes()
    try:
        started = start_network(
            nodes, tmp_path, count, "--network-key", str(network_key(tmp_path)), *extra
        )
        wait_converged(started, {info(n)["id"]: 1 for n in started})
        yield started
    finally:
        nodes.kill_all()


def network_key(tmp_path: Path) -> Path:
    path = tmp_path / "network.key"
    result = run_edgebac("network", "init", path)
    assert result.returncode == 0, result.stderr
    return path


def _iptables(action: str, source: str, dest: str) -> None:
    subprocess.run(
        ["iptables", action, "INPUT", "-s", source, "-d", dest, "-j", "DROP"],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def partition(side_a: list[str], side_b: list[str]) -> Iterator[None]:
    """Drop all traffic between two sets of loopback hosts; rules go away on exit."""
    for host in side_a + side_b:
        assert host.startswith("127."), host
    pairs = [*itertools.product(side_a, side_b), *itertools.product(side_b, side_a)]
    added: list[tuple[str, str]] = []
    try:
        for source, dest in pairs:
            _iptables("-I", source, dest)
            added.append((source, dest))
        yield
    finally:
        for source, dest in added:
            _iptables("-D", source, dest)


def sealed_post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url + "/gossip/v1", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def peer_envelope(key_path: Path | None, sender: bytes | None = None, **kwargs: Any) -> Envelope:
    """An envelope as a peer holding the network key (or the open key) would use."""
    from edgebac.gossip.envelope import OPEN_NETWORK_KEY, read_network_key

    key = read_network_key(key_path) if key_path else OPEN_NETWORK_KEY
    return Envelope(
        key, sender or bytes(SigningKey.generate().verify_key), 60_000, 4 << 20, **kwargs
    )
