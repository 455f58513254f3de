"""A node that cannot reach its network says so, and flags that can never work are refused."""

from __future__ import annotations

import json
import re
import socket

import pytest

from tests.netfix import (
    Author,
    give,
    host_port,
    info,
    network_key,
    new_author_events,
    peer_envelope,
    sealed_post,
    start_network,
    wait_converged,
)
from tests.procs import nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()


def closed_port(host: str) -> int:
    """A port on `host` that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def warnings(node, pattern: str) -> list[str]:
    return [line for line in node.lines("stderr") if re.search(pattern, line)]


def test_a_wrong_seed_address_is_said_listed_and_then_alone(nodes, tmp_path):
    seed = f"127.0.0.1:{closed_port('127.0.0.1')}"
    node = nodes.start(tmp_path / "a", "--peers", seed, listen="127.0.0.2:0")
    said = rf"^warning: seed {re.escape(seed)} unreachable: Connection refused$"
    wait_for(lambda: warnings(node, said), 30, "the seed warning")
    wait_for(lambda: warnings(node, r"^warning: alone: no peer answered in \d+ s$"), 60, "alone")
    assert len(warnings(node, said)) == 1  # tried every round, said once a minute
    assert info(node)["unreachable"] == [
        {"address": seed, "error": f"{seed} unreachable: Connection refused"}
    ]
    status, body = node.get_json("/api/v1/nodes")
    assert status == 200
    (row,) = [row for row in body["nodes"] if row["liveness"] == "unreachable"]
    assert (row["id"], row["addresses"]) == (None, [seed])
    listed = run_edgebac("node", "list", "--api", node.url)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^-\s+unreachable\s+{re.escape(seed)}\s", listed.stdout, re.M), listed.stdout


def test_a_lone_node_without_peers_stays_quiet(nodes, tmp_path):
    node = nodes.start(tmp_path / "a", listen="127.0.0.2:0")
    assert info(node)["unreachable"] == []
    assert not warnings(node, "alone|unreachable|refuses")


def test_a_wrong_network_key_is_said_on_both_sides(nodes, tmp_path):
    key = network_key(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    other_key = network_key(tmp_path / "elsewhere")
    (member,) = start_network(nodes, tmp_path, 1, "--network-key", str(key))
    stranger = nodes.start(
        tmp_path / "stranger",
        "--peers",
        host_port(member),
        "--network-key",
        str(other_key),
        listen="127.0.0.11:0",
    )
    member_says = r"^warning: refused gossip from 127\.0\.0\.11: .*another network key"
    stranger_says = rf"^warning: {re.escape(host_port(member))} refuses our gossip \("
    wait_for(lambda: warnings(member, member_says), 30, "the member's warning")
    wait_for(lambda: warnings(stranger, stranger_says + r"wrong_network_key\)"), 30, "stranger's")
    assert info(member)["gossip"]["refused_body_wrong_network_key"] >= 1
    assert len(warnings(member, member_says)) == 1


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--peers", "http://127.0.0.1:7700"), "--peers: 'http://127.0.0.1:7700' is a URL"),
        (("--peers", "127.0.0.1:7700;127.0.0.2:7700"), "separate addresses with commas"),
        (("--peers", "127.0.0.1:7700 127.0.0.2:7700"), "separate addresses with commas"),
        (("--peers", "127.0.0.1"), "--peers: '127.0.0.1' is not HOST:PORT"),
        (("--advertise", "https://edge.example:7700"), "--advertise: 'https://edge.example"),
        (("--advertise", "edge.example:0"), "--advertise: 'edge.example:0': port must be 1-65535"),
    ],
)
def test_flags_that_can_never_work_are_refused_at_start(tmp_path, flags, says):
    argv = ("node", "--data-dir", tmp_path / "d", "--listen", "127.0.0.2:0", *flags)
    result = run_edgebac(*argv, timeout=60)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert says in result.stderr
    assert "listening on" not in result.stdout


def test_addresses_that_cannot_be_dialled_never_enter_and_pushes_go_on(nodes, tmp_path):
    key = network_key(tmp_path)
    a, b = start_network(nodes, tmp_path, 2, "--network-key", str(key))
    wait_converged([a, b])
    long_name = "a" * 230 + ":7700"  # aiohttp raised UnicodeError on it, in the push loop
    announced = Author(addresses=[long_name], roles=["compute"]).announcement
    assert give(a, [announced])["accepted"] == [announced.id.hex()]
    stranger = bytes(range(32))
    rumour = [[stranger, [long_name, "http://127.0.0.9:1"], 10**9]]
    envelope = peer_envelope(key)
    status, _ = sealed_post(a.url, envelope.seal({"t": "push", "events": [], "peers": rumour}))
    assert status == 200
    for event_number in range(3):  # the node's own events still leave by push and arrive
        give(a, new_author_events(f"after {event_number}"))
    wait_converged([a, b])
    _, listed = a.get_json("/api/v1/nodes")
    addresses = [address for row in listed["nodes"] for address in row["addresses"]]
    assert long_name not in addresses
    assert not any(address.startswith("http") for address in addresses)
    assert stranger.hex() not in json.dumps(listed)
    assert a.returncode is None
    assert not warnings(a, "Traceback|UnicodeError")
