"""Gossip between real node processes on distinct loopback addresses."""

from __future__ import annotations

import signal
import time

import pytest

from tests.netfix import (
    Author,
    event_ids,
    give,
    host_port,
    info,
    network_key,
    partition,
    start_network,
    wait_converged,
)
from tests.procs import nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()


def test_five_nodes_share_everything(nodes, tmp_path):
    key = network_key(tmp_path)
    network = start_network(nodes, tmp_path, 5, "--network-key", str(key))
    authors = [Author() for _ in network]
    for node, author in zip(network, authors, strict=True):
        give(node, [author.announcement] + [author.next(f"from {node.short_id}") for _ in range(3)])
    expect = {author.id.hex(): 4 for author in authors}
    expect.update({info(node)["id"]: 1 for node in network})  # each one's NodeAnnounced
    wait_converged(network, expect)
    assert len(event_ids(network[0])) == 5 * 4 + 5


def test_node_list_shows_every_node_alive(nodes, tmp_path):
    key = network_key(tmp_path)
    network = start_network(nodes, tmp_path, 3, "--network-key", str(key), "--labels", "zone=a")
    ids = {info(node)["id"] for node in network}

    def all_alive() -> bool:
        result = run_edgebac("node", "list", "--api", network[2].url, "--output", "json")
        assert result.returncode == 0, result.stderr
        rows = __import__("json").loads(result.stdout)
        return {r["id"] for r in rows} == ids and all(
            r["liveness"] in ("alive", "self") and r["labels"] == {"zone": "a"} for r in rows
        )

    wait_for(all_alive, 15, "every node listed alive")
    text = run_edgebac("node", "list", "--api", network[0].url)
    assert text.returncode == 0
    assert "alive" in text.stdout
    assert "zone=a" in text.stdout


@pytest.mark.serial  # iptables rules between loopback addresses other tests' nodes use too
def test_partition_heals_to_identical_logs(nodes, tmp_path):
    key = network_key(tmp_path)
    network = start_network(nodes, tmp_path, 4, "--network-key", str(key))
    hosts = [host_port(node).split(":")[0] for node in network]
    wait_converged(network)
    left, right = Author(), Author()
    with partition(hosts[:2], hosts[2:]):
        give(network[0], [left.announcement] + [left.next() for _ in range(4)])
        give(network[3], [right.announcement] + [right.next() for _ in range(5)])
        # Each side converges on its own writes, and does not see the other side's.
        wait_converged(network[:2], {left.id.hex(): 5})
        wait_converged(network[2:], {right.id.hex(): 6})
        time.sleep(1.0)  # several fast-preset intervals: nothing may cross the cut
        assert right.id.hex() not in info(network[0])["version_vector"]
        assert left.id.hex() not in info(network[3])["version_vector"]
    started = time.monotonic()
    wait_converged(network, {left.id.hex(): 5, right.id.hex(): 6}, timeout=30)
    print(f"healed in {time.monotonic() - started:.2f} s")


def test_stopped_and_killed_nodes_catch_up_on_restart(nodes, tmp_path):
    key = network_key(tmp_path)
    network = start_network(nodes, tmp_path, 3, "--network-key", str(key))
    wait_converged(network)
    author = Author()
    for how in (signal.SIGTERM, signal.SIGKILL):
        victim = network[2]
        if how is signal.SIGKILL:
            victim.kill()
        else:
            assert victim.stop(how) == 0
        first = [author.announcement] if len(author.events) == 1 else []
        give(network[0], first + [author.next() for _ in range(10)])
        wait_converged(network[:2], {author.id.hex(): len(author.events)})
        # Restart on the same address and data dir, with no --peers: the log knows its peers.
        network[2] = nodes.start(
            victim.data_dir, "--network-key", str(key), listen=host_port(victim)
        )
        wait_converged(network, {author.id.hex(): len(author.events)})
