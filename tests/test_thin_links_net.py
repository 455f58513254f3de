"""Each event crosses a link about once (#17), on real node processes over loopback.

A node joining a network that holds a backlog pulls it, each author range from one peer at a
time; the peers it meets do not push it the backlog too. Before, every peer that pulled from
the newcomer pushed it everything it lacked while it was paging the same events in: the
joiner's `refused_duplicate` was 4-6 times the events it took.
"""

from __future__ import annotations

from tests.netfix import Author, give, host_port, info, start_network, wait_converged
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
    peers = ",".join(host_port(node) for node in network)
    joiner = nodes.start(tmp_path / "joiner", "--peers", peers, listen="127.0.0.9:0")
    wait_converged([*network, joiner], timeout=60)
    stats = info(joiner)["gossip"]
    new = stats.get("events_new", 0)
    duplicates = stats.get("refused_duplicate", 0)
    assert new >= AUTHORS * EVENTS_PER_AUTHOR
    assert duplicates <= MAX_DUPLICATES_PER_EVENT * new, stats
