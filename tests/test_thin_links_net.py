"""Each event crosses a link about once (#17), on real node processes over loopback.

A node joining a network that holds a backlog pulls it, each author range from one peer at a
time; the peers it meets do not push it the backlog too. Before, every peer that pulled from
the newcomer pushed it everything it lacked while it was paging the same events in: the
joiner's `refused_duplicate` was 4-6 times the events it took (3 times here, before the fix).
Bodies are compressed inside the seal, only for peers that say they read it, and a member's zip
bomb is refused without being inflated.
"""

from __future__ import annotations

import time
import urllib.request
import zlib

from nacl.secret import SecretBox

from edgebac.gossip.config import PRESETS
from edgebac.gossip.envelope import ZLIB_TAG, read_network_key
from edgebac.gossip.http import CONTENT_TYPE, INFLATES, PATH
from edgebac.gossip.protocol import RECENT_ROUNDS
from edgebac.gossip.vectors import whole_range
from edgebac.gossip.zdict import ZDICT_V1
from tests.netfix import (
    Author,
    give,
    host_port,
    info,
    network_key,
    peer_envelope,
    sealed_post,
    start_network,
    wait_converged,
)
from tests.procs import nodes_fixture

nodes = nodes_fixture()
AUTHORS = 20
EVENTS_PER_AUTHOR = 300
MAX_DUPLICATES_PER_EVENT = 0.3


def test_a_joining_node_receives_each_backlog_event_about_once(nodes, tmp_path):
    network = start_network(nodes, tmp_path, 3)
    for _ in range(AUTHORS):
        author = Author()
        chain = [author.announcement] + [
            author.next(f"backlog {i}") for i in range(1, EVENTS_PER_AUTHOR)
        ]
        give(network[0], chain)
    wait_converged(network, timeout=60)
    # A backlog: events older than the window in which events are new and pushed on (a
    # chain given in the last few rounds is new, and is pushed to a joiner as well).
    time.sleep(RECENT_ROUNDS * PRESETS["fast"].pull_interval_s + 0.5)
    peers = ",".join(host_port(node) for node in network)
    joiner = nodes.start(tmp_path / "joiner", "--peers", peers, listen="127.0.0.9:0")
    wait_converged([*network, joiner], timeout=60)
    stats = info(joiner)["gossip"]
    new = stats.get("events_new", 0)
    duplicates = stats.get("refused_duplicate", 0)
    assert new >= AUTHORS * EVENTS_PER_AUTHOR
    assert duplicates <= MAX_DUPLICATES_PER_EVENT * new, stats


def sealed_reply(node, envelope, message, inflates: bool):
    """Our sealed `message` posted as a peer of format 1 (no header) or 2 would, opened."""
    headers = {"Content-Type": CONTENT_TYPE, **({INFLATES: "1"} if inflates else {})}
    request = urllib.request.Request(
        node.url + PATH, data=envelope.seal(message), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers.get(INFLATES) == "1"
        return envelope.open(response.read())


def test_a_node_answers_compressed_only_a_peer_that_reads_it(nodes, tmp_path):
    """A network upgrading node by node: a peer that does not say it inflates (format 1, an
    older edgebac) is answered in format 1; one that does gets format 2, several-fold smaller."""
    key = network_key(tmp_path)
    node = nodes.start(tmp_path / "n", "--network-key", str(key))
    author = Author()
    give(node, [author.announcement] + [author.next("job-like " * 40) for _ in range(50)])
    envelope = peer_envelope(key)
    old = sealed_reply(node, envelope, whole_range(), inflates=False)
    new = sealed_reply(node, envelope, whole_range(), inflates=True)
    assert not old.compressed
    assert new.compressed
    assert new.message["events"] == old.message["events"]
    assert len(old.message["events"]) == 52


def test_a_members_zip_bomb_is_refused_and_counted(nodes, tmp_path):
    """A member (it holds the network key) seals 256 MiB of zeros deflated to ~250 KB: the node
    inflates no more than a body may hold, answers 413 and counts it, and goes on."""
    key = network_key(tmp_path)
    node = nodes.start(tmp_path / "n", "--network-key", str(key))
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=ZDICT_V1)
    chunk = bytes(1 << 20)
    bomb = b"".join([deflater.compress(chunk) for _ in range(256)] + [deflater.flush()])
    sealed = bytes(SecretBox(read_network_key(key)).encrypt(bytes((ZLIB_TAG,)) + bomb))
    status, body = sealed_post(node.url, sealed)
    assert status == 413
    assert b"too_large_inflated" in body
    assert info(node)["gossip"]["refused_body_too_large_inflated"] == 1
    assert node.get_json("/healthz")[0] == 200
