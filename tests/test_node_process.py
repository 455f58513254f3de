"""`edgebac node` as a real process on loopback: start, answer, restart, refuse, stop."""

from __future__ import annotations

import re
import signal
import socket
import stat

import pytest

from tests.procs import nodes_fixture, run_edgebac

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
