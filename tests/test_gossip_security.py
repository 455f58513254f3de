"""A private network's gossip refuses strangers, tampering, forgery, replays and garbage."""

from __future__ import annotations

import json
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from edgebac.eventlog.encoding import seal
from edgebac.gossip.envelope import read_network_key
from edgebac.gossip.vectors import MAX_ENTRIES, whole_range
from tests.netfix import (
    Author,
    event_ids,
    give,
    info,
    network_key,
    peer_envelope,
    sealed_post,
    start_network,
    wait_converged,
)
from tests.procs import Nodes, nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()


def push(envelope, node, raws, relay=True):
    status, body = sealed_post(
        node.url, envelope.seal({"t": "push", "events": raws, "relay": relay})
    )
    assert status == 200, body
    return envelope.open(body).message


def stats(node):
    return info(node)["gossip"]


def test_nodes_without_the_key_learn_nothing_and_tell_nothing(nodes, tmp_path):
    key = network_key(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    other_key = network_key(tmp_path / "elsewhere")
    members = start_network(nodes, tmp_path, 2, "--network-key", str(key))
    seed = ("--peers", members[0].url.removeprefix("http://"))
    keyless = nodes.start(tmp_path / "keyless", *seed, listen="127.0.0.10:0")
    wrong = nodes.start(
        tmp_path / "wrong", *seed, "--network-key", str(other_key), listen="127.0.0.11:0"
    )
    refused = "refused_body_wrong_network_key"
    wait_for(lambda: stats(members[0]).get(refused, 0) >= 4, 15, "refusals")
    secret = Author()
    give(members[1], [secret.announcement, secret.next("secret")])
    wait_converged(members)
    member_ids = {info(node)["id"] for node in members}
    for stranger in (keyless, wrong):
        assert set(info(stranger)["version_vector"]) == {info(stranger)["id"]}
        assert not member_ids & set(info(stranger)["version_vector"])
    for member in members:
        assert len(info(member)["version_vector"]) == 3  # the two members and the client
    # The stranger's own requests were answered with an error, not data.
    assert stats(keyless).get("exchange_failed", 0) > 0


def test_tampered_and_forged_events_are_refused_and_not_forwarded(nodes, tmp_path):
    key = network_key(tmp_path)
    a, b = start_network(nodes, tmp_path, 2, "--network-key", str(key))
    wait_converged([a, b])
    envelope = peer_envelope(key)
    author = Author()
    assert push(envelope, a, [author.announcement.raw])["new"] == 1
    good = author.next("payload")
    raw = bytearray(good.raw)
    raw[raw.index(b"payload")] ^= 0x01  # same shape, one bit different inside the signed body
    assert push(envelope, a, [bytes(raw)]) == {"t": "ack", "new": 0, "refused": 1}
    a_id = bytes.fromhex(info(a)["id"])
    forged = seal(SigningKey.generate(), 99, None, author.clock.now(), "Note", {"text": "x"})
    forged_raw = msgpack.unpackb(forged.raw)
    payload = msgpack.unpackb(forged_raw[0])
    payload[1] = a_id  # claims to be node a's event, signed by someone else
    forged_bytes = msgpack.packb([msgpack.packb(payload), forged_raw[1]])
    assert push(envelope, a, [forged_bytes])["refused"] == 1
    assert stats(a)["refused_bad_signature"] == 2
    # The intact event goes through and is forwarded; the bad ones never were.
    assert push(envelope, a, [good.raw])["new"] == 1
    wait_converged([a, b], {author.id.hex(): 2})
    assert "refused_bad_signature" not in stats(b)
    assert good.id.hex() in event_ids(b)


def test_replayed_and_stale_bodies_are_refused(nodes, tmp_path):
    key = network_key(tmp_path)
    (a,) = start_network(nodes, tmp_path, 1, "--network-key", str(key))
    envelope = peer_envelope(key)
    first = Author().announcement.raw
    body = envelope.seal({"t": "push", "events": [first], "relay": False})
    assert sealed_post(a.url, body)[0] == 200
    status, answer = sealed_post(a.url, body)
    assert status == 403
    assert json.loads(answer)["error"]["code"] == "replay"
    stale = peer_envelope(key, clock_ms=lambda: time.time_ns() // 1_000_000 - 600_000)
    status, answer = sealed_post(a.url, stale.seal({"t": "sync", "vv": {}, "peers": []}))
    assert status == 403
    error = json.loads(answer)["error"]
    assert error["code"] == "clock_skew"  # too old to tell a replay from a clock behind ours
    assert "600.0 s old" in error["message"]
    assert len(info(a)["version_vector"]) == 2  # a itself and the first push's author


def test_malformed_messages_and_oversized_bodies_get_4xx(nodes, tmp_path):
    key = network_key(tmp_path)
    (a,) = start_network(nodes, tmp_path, 1, "--network-key", str(key))
    box = SecretBox(read_network_key(key))
    envelope = peer_envelope(key)
    cases = {
        "malformed": bytes(box.encrypt(b"\xc1 not msgpack")),
        "bad_message": envelope.seal(["not", "a", "map"]),
    }
    for code, body in cases.items():
        status, answer = sealed_post(a.url, body)
        assert (status, json.loads(answer)["error"]["code"]) == (400, code)
    for message in (
        {"t": "gimme"},
        {"t": "sync", "vv": {}},  # the unbounded vector of the past: no range
        whole_range({b"short": 1}),
        whole_range({bytes(32): -1}),
        whole_range({i.to_bytes(32, "big"): 1 for i in range(MAX_ENTRIES + 1)}),
        {"t": "push", "events": "nope"},
    ):
        status, answer = sealed_post(a.url, envelope.seal(message))
        assert (status, json.loads(answer)["error"]["code"]) == (400, "bad_message"), message
    status, answer = sealed_post(a.url, b"x" * (5 << 20))
    assert status == 413
    assert a.get_json("/healthz")[0] == 200
    assert stats(a)["refused_body_bad_message"] == 7


@pytest.fixture(scope="module")
def lone_node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("garbage")
    started = Nodes()
    try:
        key = network_key(tmp)
        yield started.start(tmp / "node", "--network-key", str(key)), key
    finally:
        started.kill_all()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    garbage=st.binary(max_size=300)
    | st.builds(msgpack.packb, st.integers(-(2**63), 2**64 - 1) | st.text())
)
def test_garbage_bodies_get_4xx_and_the_node_goes_on(lone_node, garbage):
    node, _key = lone_node
    status, answer = sealed_post(node.url, garbage)
    assert 400 <= status < 500
    assert "error" in json.loads(answer)
    assert node.get_json("/healthz")[0] == 200


def test_authority_mode_admits_and_revokes(nodes, tmp_path):
    key = network_key(tmp_path)
    authority_file = tmp_path / "authority.key"
    made = run_edgebac("network", "authority", authority_file)
    assert made.returncode == 0, made.stderr
    authority = made.stdout.strip()
    flags = ("--network-key", str(key), "--authority", authority)
    a, b = start_network(nodes, tmp_path, 2, *flags)
    a_id, b_id = info(a)["id"], info(b)["id"]
    stranger = Author()
    rejected = give(a, [stranger.next()])["rejected"]
    assert [r["reason"] for r in rejected] == ["not_member"]
    time.sleep(1.0)  # several pull rounds: nothing of b's may be taken in the meantime
    assert b_id not in info(a)["version_vector"]
    for node_id in (a_id, b_id):
        admitted = run_edgebac(
            "network", "admit", node_id, "--authority-key", authority_file, "--api", a.url
        )
        assert admitted.returncode == 0, admitted.stderr
    wait_converged([a, b], {b_id: 1, a_id: 1, authority: 2})
    revoked = run_edgebac(
        "network", "revoke", b_id, "--authority-key", authority_file, "--api", b.url
    )
    assert revoked.returncode == 0, revoked.stderr
    wait_converged([a, b], {authority: 3})
    # b announces itself again (new labels): its own log takes it, a refuses it.
    assert b.stop() == 0
    b = nodes.start(b.data_dir, *flags, "--labels", "x=y", listen=b.url.removeprefix("http://"))
    wait_for(lambda: info(b)["version_vector"][b_id] == 2, 10, "b's new announcement")
    wait_for(lambda: stats(a).get("refused_not_member", 0) > 0, 10, "a refusing b")
    assert info(a)["version_vector"][b_id] == 1
