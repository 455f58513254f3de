"""Gossip that a member cannot poison (issue 13), against real nodes on loopback.

The attacker holds the network key: it seals whatever it likes. Each attack found in issue 13
is tried, and the network goes on as if it had not been.
"""

from __future__ import annotations

import json
import time

from nacl.signing import SigningKey

from edgebac.gossip import heartbeats
from edgebac.gossip.vectors import MAX_ENTRIES, SUMS_BYTES, whole_range
from tests.announce import announced
from tests.netfix import (
    Author,
    give,
    info,
    network_key,
    peer_envelope,
    sealed_post,
    start_network,
    wait_converged,
)
from tests.procs import nodes_fixture, wait_for

nodes = nodes_fixture()


def send(envelope, node, message):
    status, body = sealed_post(node.url, envelope.seal(message))
    return status, (envelope.open(body).message if status == 200 else json.loads(body))


def spread_s(network, timeout: float = 30.0) -> float:
    """Seconds until an event handed to the first node is held by all of them."""
    author = Author()
    started = time.monotonic()
    give(network[0], [author.announcement, author.next("spread")])
    wait_converged(network, {author.id.hex(): 2}, timeout=timeout)
    return time.monotonic() - started


def nodes_seen(node) -> dict[str, dict]:
    return {row["id"]: row for row in node.get_json("/api/v1/nodes")[1]["nodes"] if row["id"]}


def test_ten_thousand_authors_do_not_stop_sync(nodes, tmp_path):
    """Vector bomb: 10,000 one-event identities (each its NodeAnnounced) made every sync message
    carry a 10,000-entry vector, and sync stopped. Now a message carries 2 KiB of digests or at
    most 1,024 entries, and the three nodes converge."""
    key = network_key(tmp_path)
    network = start_network(nodes, tmp_path, 3, "--network-key", str(key))
    wait_converged(network)
    before = spread_s(network)
    hlc = Author().clock
    bomb = [
        announced(SigningKey.generate(), hlc.now(), addresses=[f"127.0.0.1:{1 + i % 999}"])
        for i in range(10_000)
    ]
    started = time.monotonic()
    for first in range(0, len(bomb), 1000):
        assert len(give(network[1], bomb[first : first + 1000])["accepted"]) == 1000
    wait_converged(network, {bomb[-1].author.hex(): 1}, timeout=120)
    converged = time.monotonic() - started
    assert len(info(network[2])["version_vector"]) > 10_000
    # Every exchange is bounded whatever the number of authors: digests, then ranges.
    envelope = peer_envelope(key)
    status, diff = send(envelope, network[2], {"t": "sums", "sums": bytes(SUMS_BYTES)})
    assert status == 200
    assert diff["mask"] == b"\xff" * 32
    status, page = send(envelope, network[2], whole_range())
    assert status == 200
    assert len(page["vv"]) == MAX_ENTRIES
    assert page["hi"] < b"\xff" * 32  # the range was cut at the entries a message may carry
    assert len(envelope.seal(page)) < 1 << 20
    after = spread_s(network)
    print(f"spread {before:.2f} s before, {after:.2f} s after; 10,000 authors in {converged:.1f} s")
    assert after < 10.0


def test_a_rumour_cannot_redirect_another_nodes_address(nodes, tmp_path):
    """A member naming node b as the sender, with its own address and a huge heartbeat,
    redirected b's address at a for good. Unsigned or wrongly signed entries change nothing."""
    key = network_key(tmp_path)
    a, b, c = start_network(nodes, tmp_path, 3, "--network-key", str(key))
    wait_converged([a, b, c])
    b_id = bytes.fromhex(info(b)["id"])
    wait_for(lambda: nodes_seen(a)[b_id.hex()]["liveness"] == "alive", 20, "b alive at a")
    address = nodes_seen(a)[b_id.hex()]["addresses"]
    forged = heartbeats.sign(SigningKey.generate(), ["127.0.0.66:1"], 2**62)
    forged[0] = b_id
    envelope = peer_envelope(key, sender=b_id)
    for peers in ([[b_id, ["127.0.0.66:1"], 2**62]], [forged]):
        status, _ = send(envelope, a, {"t": "push", "events": [], "relay": True, "peers": peers})
        assert status == 200
    assert info(a)["gossip"]["rumours_refused"] == 1
    assert nodes_seen(a)[b_id.hex()]["addresses"] == address
    assert spread_s([a, b, c]) < 10.0
    assert nodes_seen(a)[b_id.hex()]["liveness"] == "alive"


def test_three_thousand_fake_members_do_not_slow_spread(nodes, tmp_path):
    """3,000 fake members slowed spread from 0.2 s to 11.8 s. Unsigned ones now make no state;
    self-signed ones (minted keys, addresses nobody answers at) never displace the nodes that
    answer, and pushes go to those first."""
    key = network_key(tmp_path)
    network = start_network(nodes, tmp_path, 3, "--network-key", str(key))
    wait_converged(network)
    before = spread_s(network)
    envelope = peer_envelope(key)
    for batch in range(50):
        unsigned = [
            [bytes(SigningKey.generate().verify_key), ["127.0.0.1:9"], 1] for _ in range(30)
        ]
        signed = [
            heartbeats.sign(SigningKey.generate(), [f"127.0.0.1:{1000 + batch}"], 1)
            for _ in range(30)
        ]
        for target in network:
            message = {"t": "sums", "sums": bytes(SUMS_BYTES), "peers": unsigned + signed}
            assert send(envelope, target, message)[0] == 200
    after = spread_s(network)
    seen = nodes_seen(network[0])
    ids = {info(node)["id"] for node in network[1:]}
    assert ids <= set(seen)
    assert len(seen) <= 3 + 50 * 30  # the unsigned ones left no trace
    print(f"spread {before:.2f} s before, {after:.2f} s after 3,000 fake members")
    assert after < 10.0


def test_unknown_message_types_leave_no_state(nodes, tmp_path):
    """Each unknown type added a permanent counter: GET /api/v1/node grew to 3 MB."""
    key = network_key(tmp_path)
    (a,) = start_network(nodes, tmp_path, 1, "--network-key", str(key))
    envelope = peer_envelope(key)
    size = len(a.request("/api/v1/node")[1])
    for index in range(2_000):
        status, error = send(envelope, a, {"t": f"kind-{index}-" + "x" * 100})
        assert (status, error["error"]["code"]) == (400, "bad_message")
    gossip = info(a)["gossip"]
    assert gossip["refused_unknown_type"] == 2_000
    assert not any(name.startswith(("recv_kind", "refused_kind")) for name in gossip)
    assert len(a.request("/api/v1/node")[1]) < size + 200
    assert a.get_json("/healthz")[0] == 200
