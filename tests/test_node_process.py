"""`edgebac node` as a real process on loopback: start, answer, restart, refuse, stop."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import stat
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import seal
from edgebac.eventlog.store import EventLog
from tests.announce import announced
from tests.netfix import Author, give, post_json
from tests.procs import START_TIMEOUT_S, ProcessTimeout, nodes_fixture, run_edgebac

nodes = nodes_fixture()


def assert_verifies(data_dir) -> None:
    result = run_edgebac("log", "verify", "--data-dir", data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("ok")


def test_port_zero_binds_a_free_port_and_prints_it(nodes, tmp_path):
    node = nodes.start(tmp_path / "n")
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", node.url)
    assert match, node.url
    assert int(match.group(1)) > 0
    line = node.lines()[0]
    assert f"(data dir {tmp_path / 'n'})" in line

    status, body = node.get_json("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["id"].startswith(node.short_id)


def test_two_nodes_on_port_zero_get_different_ports(nodes, tmp_path):
    a = nodes.start(tmp_path / "a")
    b = nodes.start(tmp_path / "b")
    assert a.url != b.url
    assert a.get_json("/healthz")[1]["id"] != b.get_json("/healthz")[1]["id"]


def test_node_info_answers_id_key_vector_and_roles(nodes, tmp_path):
    node = nodes.start(tmp_path / "n", "--roles", "compute", "--labels", "zone=lab,gpu=no")
    status, info = node.get_json("/api/v1/node")
    assert status == 200
    assert info["id"] == node.get_json("/healthz")[1]["id"]
    assert info["public_key"] == info["id"]
    assert re.fullmatch(r"[0-9a-f]{64}", info["public_key"])
    assert info["roles"] == ["compute"]
    assert info["labels"] == {"zone": "lab", "gpu": "no"}
    assert info["addresses"] == [node.url.removeprefix("http://")]
    assert isinstance(info["version"], str)
    assert info["version"]
    # The node announced itself: its own chain holds at least that event.
    assert info["version_vector"].get(info["id"], 0) >= 1
    assert info["events"] >= 1


def test_default_roles_are_both(nodes, tmp_path):
    node = nodes.start(tmp_path / "n")
    assert node.get_json("/api/v1/node")[1]["roles"] == ["compute", "requester"]


def test_key_file_is_private_and_reused_after_restart(nodes, tmp_path):
    data_dir = tmp_path / "n"
    first = nodes.start(data_dir)
    key_file = data_dir / "node.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_text = key_file.read_text()
    node_id = first.get_json("/healthz")[1]["id"]
    assert first.stop(signal.SIGTERM) == 0

    second = nodes.start(data_dir)
    assert second.get_json("/healthz")[1]["id"] == node_id
    assert key_file.read_text() == key_text
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    vector = second.get_json("/api/v1/node")[1]["version_vector"]
    assert list(vector) == [node_id]  # one author across both runs: the same identity


def test_second_node_on_the_same_data_dir_is_refused(nodes, tmp_path):
    data_dir = tmp_path / "n"
    first = nodes.start(data_dir)
    second = nodes.spawn(data_dir)
    assert second.wait() != 0
    lines = [line for line in second.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, second.stderr
    assert str(data_dir) in lines[0]
    assert "in use" in lines[0]
    assert f"pid {first.pid}" in lines[0]
    assert "Traceback" not in second.stderr
    # The first node is unharmed.
    assert first.get_json("/healthz")[0] == 200


def _busy_port() -> socket.socket:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    return busy


def test_a_failed_start_creates_nothing(nodes, tmp_path):
    """A port in use, a corrupt key: the try leaves no key, no empty log and no lock behind."""
    with _busy_port() as busy:
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        fresh = nodes.spawn(tmp_path / "fresh", listen=address)
        assert fresh.wait() != 0
        assert "cannot listen" in fresh.stderr
        assert not (tmp_path / "fresh").exists()

        empty = tmp_path / "empty"
        empty.mkdir()
        assert nodes.spawn(empty, listen=address).wait() != 0
        assert sorted(p.name for p in empty.iterdir()) == []

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "node.key").write_text("garbage\n")
    refused = nodes.spawn(corrupt)
    assert refused.wait() != 0
    assert "corrupt node key" in refused.stderr
    assert sorted(p.name for p in corrupt.iterdir()) == ["node.key"]


def test_a_failed_restart_keeps_the_node_it_was(nodes, tmp_path):
    """An existing node whose restart fails keeps its key and log, and starts fine later."""
    data_dir = tmp_path / "n"
    first = nodes.start(data_dir)
    node_id = first.get_json("/healthz")[1]["id"]
    assert first.stop(signal.SIGTERM) == 0
    before = sorted(p.name for p in data_dir.iterdir())
    with _busy_port() as busy:
        failed = nodes.spawn(data_dir, listen=f"127.0.0.1:{busy.getsockname()[1]}")
        assert failed.wait() != 0
    assert sorted(p.name for p in data_dir.iterdir()) == before
    again = nodes.start(data_dir)
    assert again.get_json("/healthz")[1]["id"] == node_id
    assert_verifies(data_dir)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_node_cleanly(nodes, tmp_path, signum):
    data_dir = tmp_path / "n"
    node = nodes.start(data_dir)
    assert node.get_json("/healthz")[0] == 200
    assert node.stop(signum) == 0
    assert "Traceback" not in node.stderr
    assert_verifies(data_dir)
    # The lock went with the process: a new node starts on the same directory.
    assert nodes.start(data_dir).get_json("/healthz")[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/path", 404, "not_found"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("GET", "/api/v1/events?limit=x", 400, "bad_request"),
    ],
)
def test_errors_have_one_json_shape(nodes, tmp_path, method, path, status, code):
    node = nodes.start(tmp_path / "n")
    got_status, body = node.get_json(path, method)
    assert got_status == status
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def test_a_fresh_author_whose_first_event_is_not_its_announcement_is_refused(nodes, tmp_path):
    """POST /api/v1/events: a chain must open with its author's NodeAnnounced; what does not is
    refused (not_announced, the rest of it a gap), and the node goes on taking good chains."""
    node = nodes.start(tmp_path / "n")
    stranger = Author()
    early = seal(stranger.key, 1, None, stranger.clock.now(), "Note", {"text": "me first"})
    later = seal(stranger.key, 2, early.id, stranger.clock.now(), "Note", {"text": "and me"})
    answer = give(node, [early, later])
    assert answer["accepted"] == []
    assert [r["reason"] for r in answer["rejected"]] == ["not_announced", "gap"]
    assert "first event must be its NodeAnnounced, not Note" in answer["rejected"][0]["detail"]
    status, info = node.get_json("/api/v1/node")
    assert status == 200
    assert stranger.id.hex() not in info["version_vector"]
    # The same author, announcing first, is taken; so is anyone else's chain.
    member = Author()
    chains = [stranger.announcement, stranger.next(), member.announcement, member.next()]
    assert give(node, chains)["accepted"] == [event.id.hex() for event in chains]
    vector = node.get_json("/api/v1/node")[1]["version_vector"]
    assert (vector[stranger.id.hex()], vector[member.id.hex()]) == (2, 2)
    assert node.returncode is None
    assert "Traceback" not in node.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_answer(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST `body` from the instant the port takes connections: a tight loop, as connection
    attempts to a port nobody listens on fail at once (a slower poll could miss the start).
    A node not ready yet answers 503 `not_ready` (nothing written): that is asked again."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            status, answer = post_json(url, body)
        except (urllib.error.URLError, ConnectionError):
            continue
        if status == 503 and answer["error"]["code"] == "not_ready":
            continue
        return status, answer
    raise ProcessTimeout(f"no answer from {url} within {START_TIMEOUT_S} s")


HELD = 3000  # enough to read that the window between bind and announcement is always hit


async def _held_announcements(data_dir: Path, count: int) -> None:
    """A log that already holds `count` other members' announcements (and nothing of the node's
    own): the node reads them at start, between binding its port and announcing itself."""
    log = await EventLog.open(data_dir / "events.db", HybridClock(60_000))
    try:
        clock = HybridClock(60_000)
        await log.ingest([announced(SigningKey.generate(), clock.now()).raw for _ in range(count)])
    finally:
        await log.close()


def test_a_job_submitted_the_instant_the_node_listens_follows_its_announcement(nodes, tmp_path):
    """The node's first event is its NodeAnnounced (an author's first event must be): requests
    that arrive before it is written wait for it (a job submitted then was refused, 400)."""
    (tmp_path / "n").mkdir(mode=0o700)
    asyncio.run(_held_announcements(tmp_path / "n", HELD))
    port = _free_port()
    node = nodes.spawn(tmp_path / "n", listen=f"127.0.0.1:{port}")
    status, body = _first_answer(
        f"http://127.0.0.1:{port}/api/v1/jobs", {"engine": {"type": "noop"}}
    )
    assert status == 201, body
    node.wait_listening()
    _, page = node.get_json(f"/api/v1/events?after={HELD}&limit=10")  # past the held ones
    own = [(e["seq"], e["type"]) for e in page["events"] if e["author"].startswith(node.short_id)]
    assert own[:2] == [(1, "NodeAnnounced"), (2, "JobCreated")]
